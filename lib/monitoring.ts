import { ArnFormat, Aws, Duration, Stack } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cloudwatchActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as snsSubscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import type { Construct } from 'constructs';
import {
  METRIC_NAMESPACE,
  ROTATION_METRICS,
  ROTATION_SERVICE,
  VERIFIER_METRICS,
  VERIFIER_SERVICE,
  type RotationMetric,
  type VerifierMetric,
} from '../src/aws/contract.js';
import { Concern } from './concern.js';

export interface MonitoringProps {
  rotationLogs: logs.ILogGroup;
  verifierFunction: lambda.IFunction;
  /** What the saved queries' names start with (the stack and the rotation construct). */
  queryPrefix: string;
  alarmEmail?: string;
  skippedNodesAlarmThreshold: number;
}

/**
 * What an operator watches: the alarms and their topic, the dashboard, and the saved
 * CloudWatch Logs Insights queries that audit every rotation.
 */
export class Monitoring extends Concern {
  readonly alarmTopic: sns.Topic;
  private readonly verifierFunction: lambda.IFunction;

  constructor(scope: Construct, id: string, props: MonitoringProps) {
    super(scope, id);
    this.verifierFunction = props.verifierFunction;
    this.saveAuditQueries(props.rotationLogs, props.queryPrefix);
    this.alarmTopic = this.createAlarms(props.alarmEmail, props.skippedNodesAlarmThreshold);
    this.createDashboard();
  }

  /** A metric one of the functions publishes, with the dimension Powertools gives it: its service. */
  private metric(name: RotationMetric | VerifierMetric, statistic: string): cloudwatch.Metric {
    const service = (Object.values(ROTATION_METRICS) as string[]).includes(name) ? ROTATION_SERVICE : VERIFIER_SERVICE;
    return new cloudwatch.Metric({ namespace: METRIC_NAMESPACE, metricName: name, statistic, period: Duration.minutes(5), dimensionsMap: { service } });
  }

  private createAlarms(email: string | undefined, skippedNodesThreshold: number): sns.Topic {
    const topicKey = new kms.Key(this, 'AlarmTopicKey', { enableKeyRotation: true, description: 'Encrypts the ticket key alarm notifications' });
    topicKey.grant(new iam.ServicePrincipal('cloudwatch.amazonaws.com'), 'kms:Decrypt', 'kms:GenerateDataKey*');
    const topic = new sns.Topic(this, 'AlarmTopic', { masterKey: topicKey, enforceSSL: true, displayName: 'TLS ticket key rotation alarms' });
    // The topic's policy replaces SNS's default one, so with only enforceSSL's Deny in it nothing
    // could publish: allow this account's alarms, and nothing else.
    topic.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'AllowThisAccountsAlarms',
        principals: [new iam.ServicePrincipal('cloudwatch.amazonaws.com')],
        actions: ['sns:Publish'],
        resources: [topic.topicArn],
        conditions: {
          StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID },
          ArnLike: { 'aws:SourceArn': Stack.of(this).formatArn({ service: 'cloudwatch', resource: 'alarm', resourceName: '*', arnFormat: ArnFormat.COLON_RESOURCE_NAME }) },
        },
      }),
    );
    if (email !== undefined) topic.addSubscription(new snsSubscriptions.EmailSubscription(email));
    const action = new cloudwatchActions.SnsAction(topic);
    const alarms = [
      new cloudwatch.Alarm(this, 'ResumptionRateAlarm', {
        alarmDescription: 'Cross-node ticket resumption fell below 100%: some node cannot open its peers\' tickets (see the verifier log)',
        metric: this.metric(VERIFIER_METRICS.crossNodeResumptionRate, 'Minimum'),
        comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
        threshold: 100,
        evaluationPeriods: 1,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      }),
      new cloudwatch.Alarm(this, 'NodesOffKeyAlarm', {
        alarmDescription: 'A node does not encrypt with the current ticket key (stale, unreachable or misconfigured)',
        metric: this.metric(VERIFIER_METRICS.nodesNotOnExpectedKey, 'Maximum'),
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        threshold: 0,
        evaluationPeriods: 1,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      }),
      new cloudwatch.Alarm(this, 'VerifierErrorsAlarm', {
        alarmDescription: 'The verifier function failed or is not running',
        metric: this.verifierFunction.metricErrors({ period: Duration.minutes(5), statistic: 'Sum' }),
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        threshold: 0,
        evaluationPeriods: 1,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      }),
      new cloudwatch.Alarm(this, 'NodesSkippedAlarm', {
        alarmDescription: 'A rotation skipped tagged nodes that are stopped or not connected to SSM (see skippedNodes in the rotation log)',
        metric: this.metric(ROTATION_METRICS.nodesSkipped, 'Maximum'),
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        threshold: skippedNodesThreshold,
        evaluationPeriods: 1,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      }),
      new cloudwatch.Alarm(this, 'RotationFailedAlarm', {
        alarmDescription: 'A rotation step failed: see the rotation-history query',
        metric: this.metric(ROTATION_METRICS.rotationsFailed, 'Sum'),
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        threshold: 0,
        evaluationPeriods: 1,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      }),
    ];
    for (const alarm of alarms) alarm.addAlarmAction(action);
    return topic;
  }

  private createDashboard(): void {
    // Dashboard names are global to the account: the region keeps two regions' stacks apart.
    const dashboard = new cloudwatch.Dashboard(this, 'Dashboard', { dashboardName: `${Stack.of(this).stackName}-ticket-keys-${Aws.REGION}` });
    const graph = (title: string, metrics: cloudwatch.IMetric[]) => new cloudwatch.GraphWidget({ title, left: metrics, width: 12 });
    dashboard.addWidgets(
      graph('Rotations', [this.metric(ROTATION_METRICS.rotationsSucceeded, 'Sum'), this.metric(ROTATION_METRICS.rotationsFailed, 'Sum')]),
      graph('Nodes per rotation', [this.metric(ROTATION_METRICS.nodesUpdated, 'Sum'), this.metric(ROTATION_METRICS.nodesFailed, 'Sum'), this.metric(ROTATION_METRICS.nodesSkipped, 'Maximum')]),
    );
    dashboard.addWidgets(
      graph('Cross-node resumption (%)', [this.metric(VERIFIER_METRICS.crossNodeResumptionRate, 'Minimum'), this.metric(VERIFIER_METRICS.continuityResumptionRate, 'Minimum')]),
      graph('Nodes (canary)', [this.metric(VERIFIER_METRICS.nodesOnExpectedKey, 'Minimum'), this.metric(VERIFIER_METRICS.nodesNotOnExpectedKey, 'Maximum'), this.metric(VERIFIER_METRICS.unreachableNodes, 'Maximum')]),
    );
    dashboard.addWidgets(
      graph('Verification duration (ms)', [this.metric(VERIFIER_METRICS.verificationDuration, 'Maximum')]),
      graph('Verifier errors', [this.verifierFunction.metricErrors({ period: Duration.minutes(5), statistic: 'Sum' })]),
    );
  }

  private saveAuditQueries(rotationLogs: logs.ILogGroup, prefix: string): void {
    new logs.QueryDefinition(this, 'RotationHistory', {
      queryDefinitionName: `${prefix}/rotation-history`,
      logGroups: [rotationLogs],
      queryString: new logs.QueryString({
        fields: ['@timestamp', 'versionId', 'kind', 'step', 'outcome', 'generation', 'keyNames', 'nodesUpdated', 'nodesFailed', 'error'],
        filterStatements: ['message = "rotation step"', 'step in ["createSecret", "setSecret", "finishSecret"] or outcome = "failed"'],
        sort: '@timestamp desc',
      }),
    });
    new logs.QueryDefinition(this, 'FailedNodes', {
      queryDefinitionName: `${prefix}/failed-nodes`,
      logGroups: [rotationLogs],
      queryString: new logs.QueryString({
        fields: ['@timestamp', 'versionId', 'step', 'generation', 'failedNodes'],
        filterStatements: ['message = "rotation step"', 'nodesFailed > 0'],
        sort: '@timestamp desc',
      }),
    });
    new logs.QueryDefinition(this, 'Revocations', {
      queryDefinitionName: `${prefix}/revocations`,
      logGroups: [rotationLogs],
      queryString: new logs.QueryString({
        fields: ['@timestamp', 'requestedBy', 'generation', 'versionId', 'step', 'outcome', 'nodesFailed', 'error'],
        filterStatements: ['message = "revocation"'],
        sort: '@timestamp desc',
      }),
    });
  }
}
