import { ArnFormat, Aws, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as ssm from 'aws-cdk-lib/aws-ssm';
import { NagSuppressions } from 'cdk-nag';
import type { Construct } from 'constructs';
import { AWSCURRENT, AWSPENDING } from '../src/core/secret-store.js';
import { Concern } from './concern.js';
import { nodeApplierDocument, nodeOnboardingDocument, type NodeApplierSettings } from './node-applier-document.js';

export interface NodeDocumentsProps {
  settings: NodeApplierSettings;
  secret: secretsmanager.ISecret;
  key: kms.IKey;
  targetTagKey: string;
  targetTagValue: string;
  convergenceSchedule: string;
  maxConcurrency: string;
  retention: logs.RetentionDays;
}

/**
 * The nodes' side: the documents that onboard a node and apply a key set on it, the association
 * that keeps every tagged node on AWSCURRENT, the policy their instance role needs, and the log
 * group their command output goes to.
 */
export class NodeDocuments extends Concern {
  readonly document: ssm.CfnDocument;
  readonly onboardingDocument: ssm.CfnDocument;
  readonly documentArn: string;
  readonly convergence: ssm.CfnAssociation;
  readonly nodePolicy: iam.ManagedPolicy;
  readonly commandOutput: logs.LogGroup;

  constructor(scope: Construct, id: string, props: NodeDocumentsProps) {
    super(scope, id);
    const { secret, key } = props;
    this.commandOutput = new logs.LogGroup(this, 'CommandOutput', { retention: props.retention });
    this.document = new ssm.CfnDocument(this, 'NodeApplier', { documentType: 'Command', content: nodeApplierDocument(props.settings) });
    this.onboardingDocument = new ssm.CfnDocument(this, 'NodeOnboarding', {
      documentType: 'Command',
      content: nodeOnboardingDocument(props.settings, { arn: secret.secretArn, region: Stack.of(this).region }),
    });
    this.documentArn = Stack.of(this).formatArn({ service: 'ssm', resource: 'document', resourceName: this.document.ref });

    this.convergence = new ssm.CfnAssociation(this, 'Convergence', {
      name: this.document.ref,
      targets: [{ key: `tag:${props.targetTagKey}`, values: [props.targetTagValue] }],
      parameters: { SecretId: [secret.secretArn] },
      scheduleExpression: props.convergenceSchedule,
      applyOnlyAtCronInterval: false,
      maxConcurrency: props.maxConcurrency,
      maxErrors: '100%',
    });

    const commandOutputGroupArn = Stack.of(this).formatArn({ service: 'logs', resource: 'log-group', resourceName: this.commandOutput.logGroupName, arnFormat: ArnFormat.COLON_RESOURCE_NAME });
    this.nodePolicy = new iam.ManagedPolicy(this, 'NodePolicy', {
      description: 'Attach to the fleet nodes\' instance role: read the ticket key set and write command output',
      statements: [
        // Only the stages a node applies, named in the request: never AWSPREVIOUS, never an old
        // version by its id (the key is absent from a request that names no stage).
        new iam.PolicyStatement({
          actions: ['secretsmanager:GetSecretValue'],
          resources: [secret.secretArn],
          conditions: { 'ForAnyValue:StringEquals': { 'secretsmanager:VersionStage': [AWSCURRENT, AWSPENDING] } },
        }),
        new iam.PolicyStatement({
          actions: ['kms:Decrypt'],
          resources: [key.keyArn],
          conditions: { StringEquals: { 'kms:ViaService': `secretsmanager.${Aws.REGION}.amazonaws.com` } },
        }),
        // The SSM agent creates the output group itself before it streams, and streams nothing
        // if that fails with anything but "already exists":
        // https://docs.aws.amazon.com/systems-manager/latest/userguide/sysman-rc-setting-up-cwlogs.html
        new iam.PolicyStatement({
          actions: ['logs:CreateLogGroup', 'logs:CreateLogStream', 'logs:DescribeLogStreams', 'logs:PutLogEvents'],
          resources: [commandOutputGroupArn, this.commandOutput.logGroupArn],
        }),
        new iam.PolicyStatement({ actions: ['logs:DescribeLogGroups'], resources: ['*'] }),
      ],
    });
    this.keepFormerIds();
    const commandOutputId = Stack.of(this).resolve((this.commandOutput.node.defaultChild as logs.CfnLogGroup).logicalId) as string;
    NagSuppressions.addResourceSuppressions(this.nodePolicy, [
      {
        id: 'AwsSolutions-IAM5',
        reason: 'logs:DescribeLogGroups has no resource-level permissions; the stream actions are limited to the command output group\'s own streams',
        appliesTo: ['Resource::*', `Resource::<${commandOutputId}.Arn>`],
      },
    ]);
  }
}
