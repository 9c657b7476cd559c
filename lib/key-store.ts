import { Aws, Duration, SecretValue, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as schedulerTargets from 'aws-cdk-lib/aws-scheduler-targets';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as ssm from 'aws-cdk-lib/aws-ssm';
import { NagSuppressions } from 'cdk-nag';
import type { Construct } from 'constructs';
import { ROTATION_ENVIRONMENT as ROTATION_ENV, ROTATION_SERVICE } from '../src/aws/contract.js';
import { EMPTY_KEY_SET_PLACEHOLDER } from '../src/core/keyset.js';
import type { RotationPolicy } from '../src/core/policy.js';
import { SCHEDULER_MAX_EVENT_AGE_SECONDS, type RotationSchedule } from '../src/core/schedule.js';
import { REVOCATION_TAG } from '../src/core/secret-store.js';
import { Concern } from './concern.js';
import type { NodeDocuments } from './node-documents.js';
import { restrictReads } from './restrict-reads.js';
import { ticketKeyFunction } from './ticket-key-function.js';

/**
 * Secrets Manager's own schedule while EventBridge Scheduler starts the rotations: its longest.
 * Removing the schedule instead would not stop it (aws-cdk#27460), and with AutomaticallyAfterDays
 * "Secrets Manager calculates the next rotation date based on the previous rotation"
 * (https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_RotationRulesType.html),
 * so the Scheduler's far more frequent rotations keep pushing it back: it never starts one.
 */
const SCHEDULER_ROTATION_NATIVE_INTERVAL = Duration.days(1000);
/** With a scheduled time (2026-11-25T18:00:00Z) it makes a token of 39 characters: Secrets Manager wants 32 to 64. */
const SCHEDULED_ROTATION_TOKEN_PREFIX = 'scheduled-rotation-';

export interface KeyStoreProps {
  retention: logs.RetentionDays;
}

export interface RotationProps {
  policy: Required<Pick<RotationPolicy, 'rotationIntervalSeconds' | 'ticketLifetimeSeconds' | 'keyLength' | 'flavor'>>;
  schedule: RotationSchedule;
  documents: NodeDocuments;
  verifierFunction: nodejs.NodejsFunction;
  targetTagKey: string;
  targetTagValue: string;
  maxConcurrency: string;
  maxErrors: string;
  /** The nodes' roles, when given: with the rotation function, the only readers of the key set. */
  nodeRoleArns?: string[];
}

/**
 * The key set and its rotation: the secret (on a KMS key of its own, read by nobody but the
 * rotation function and the nodes), the key names the rotation publishes, the rotation function
 * and what starts it, and the rotation log group.
 */
export class KeyStore extends Concern {
  readonly key: kms.Key;
  readonly secret: secretsmanager.Secret;
  /** The current and pending key names (no material): what the verifier checks the nodes against. */
  readonly keyNames: ssm.StringParameter;
  readonly rotationLogs: logs.LogGroup;

  constructor(scope: Construct, id: string, props: KeyStoreProps) {
    super(scope, id);
    this.key = new kms.Key(this, 'Key', { enableKeyRotation: true, description: 'Encrypts the TLS session ticket key set' });
    this.secret = new secretsmanager.Secret(this, 'KeySet', {
      description: 'TLS session ticket key set (current, next, previous keys); written only by its rotation function',
      encryptionKey: this.key,
      // No key material in CloudFormation: the first rotation, at deploy, writes generation 1.
      secretStringValue: SecretValue.unsafePlainText(EMPTY_KEY_SET_PLACEHOLDER),
    });
    this.rotationLogs = new logs.LogGroup(this, 'RotationLogs', { retention: props.retention });
    // The names of the current and pending keys, written by the rotation: the verifier checks the
    // wire against them and reads no key set. Names are in every ticket anyway.
    this.keyNames = new ssm.StringParameter(this, 'KeyNames', {
      description: 'Names of the current and pending TLS ticket keys (no key material), published by the rotation function',
      stringValue: '{}',
    });
  }

  /** The rotation function, started by Secrets Manager's schedule or by the Scheduler, and the reads it alone (with the nodes) may make. */
  rotate(props: RotationProps): nodejs.NodejsFunction {
    const { policy, schedule, documents } = props;
    const role = new iam.Role(this, 'RotationRole', { assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'), description: 'TLS ticket key rotation function' });
    // Its own role rather than the AWS managed basic execution role: it writes only its own log group.
    role.addToPolicy(new iam.PolicyStatement({ actions: ['logs:CreateLogStream', 'logs:PutLogEvents'], resources: [this.rotationLogs.logGroupArn] }));
    const rotation = ticketKeyFunction(this, 'RotationFunction', {
      description: 'Secrets Manager rotation of the TLS session ticket key set across the tagged fleet',
      handlerFile: 'rotation.ts',
      memorySize: 256,
      // setSecret waits for every node; each step has the whole Lambda limit.
      timeout: Duration.minutes(15),
      logGroup: this.rotationLogs,
      role,
      service: ROTATION_SERVICE,
      environment: {
        [ROTATION_ENV.keyLength]: String(policy.keyLength),
        [ROTATION_ENV.serverFlavor]: policy.flavor,
        [ROTATION_ENV.rotationIntervalSeconds]: String(policy.rotationIntervalSeconds),
        [ROTATION_ENV.ticketLifetimeSeconds]: String(policy.ticketLifetimeSeconds),
        [ROTATION_ENV.documentName]: documents.document.ref,
        [ROTATION_ENV.targetTagKey]: props.targetTagKey,
        [ROTATION_ENV.targetTagValue]: props.targetTagValue,
        [ROTATION_ENV.maxConcurrency]: props.maxConcurrency,
        [ROTATION_ENV.maxErrors]: props.maxErrors,
        [ROTATION_ENV.commandOutputLogGroup]: documents.commandOutput.logGroupName,
        [ROTATION_ENV.verifierFunctionName]: props.verifierFunction.functionName,
        [ROTATION_ENV.keyNamesParameter]: this.keyNames.parameterName,
      },
    });
    role.addToPolicy(new iam.PolicyStatement({ actions: ['lambda:InvokeFunction'], resources: [props.verifierFunction.functionArn] }));
    role.addToPolicy(new iam.PolicyStatement({ actions: ['ssm:PutParameter'], resources: [this.keyNames.parameterArn] }));
    this.grantRotation(role, documents.documentArn, props.targetTagKey, props.targetTagValue);

    const rotationSchedule = this.secret.addRotationSchedule('Rotation', {
      rotationLambda: rotation,
      // Duration 0 leaves rotation configured ("Rotate secret immediately" works) with no schedule of its own.
      automaticallyAfter: schedule.kind === 'secrets-manager' ? Duration.seconds(policy.rotationIntervalSeconds) : SCHEDULER_ROTATION_NATIVE_INTERVAL,
      // At deploy no node can take keys yet (the node policy and the onboarding document come
      // from this stack): Secrets Manager only tests the configuration, and the operator starts
      // the first rotation once the nodes are onboarded.
      rotateImmediatelyOnUpdate: false,
    });
    const rules = rotationSchedule.node.defaultChild as secretsmanager.CfnRotationSchedule;
    if (schedule.kind === 'secrets-manager') {
      // A window of its own: without one a rate in days may rotate at any hour of the UTC day.
      rules.addPropertyOverride('RotationRules.ScheduleExpression', schedule.expression);
      rules.addPropertyOverride('RotationRules.Duration', schedule.duration);
    } else {
      // As days counted from the previous rotation, not the rate() that CDK writes.
      rules.addPropertyDeletionOverride('RotationRules.ScheduleExpression');
      rules.addPropertyOverride('RotationRules.AutomaticallyAfterDays', SCHEDULER_ROTATION_NATIVE_INTERVAL.toDays());
      this.scheduleFrequentRotation(rotation, schedule.expression);
    }
    this.limitRotationInvokeToThisAccount(rotation);
    restrictReads(this.secret, this.key, [role.roleArn, ...(props.nodeRoleArns ?? [])], {
      ...(props.nodeRoleArns === undefined ? { taggedReaders: { key: props.targetTagKey, value: props.targetTagValue } } : {}),
    });
    return rotation;
  }

  private grantRotation(role: iam.Role, documentArn: string, tagKey: string, tagValue: string): void {
    // The rotation schedule grants the secret's own actions (Describe, Get, Put,
    // UpdateSecretVersionStage) and, in the key policy, the key's use through Secrets Manager.
    role.addToPolicy(new iam.PolicyStatement({ actions: ['ssm:SendCommand'], resources: [documentArn] }));
    // createSecret looks for a pending version an operator took AWSPENDING off after cancelling.
    role.addToPolicy(new iam.PolicyStatement({ actions: ['secretsmanager:ListSecretVersionIds'], resources: [this.secret.secretArn] }));
    // A finished revocation withdraws the RevokeTicketKeys tag that asked for it, and only that tag.
    role.addToPolicy(
      new iam.PolicyStatement({
        actions: ['secretsmanager:UntagResource'],
        resources: [this.secret.secretArn],
        conditions: { 'ForAllValues:StringEquals': { 'aws:TagKeys': [REVOCATION_TAG] } },
      }),
    );
    role.addToPolicy(
      new iam.PolicyStatement({
        actions: ['ssm:SendCommand'],
        resources: [Stack.of(this).formatArn({ service: 'ec2', resource: 'instance', resourceName: '*' })],
        conditions: { StringEquals: { [`ssm:resourceTag/${tagKey}`]: tagValue } },
      }),
    );
    // These support no resource-level permissions. CancelCommand only stops what SendCommand
    // started, and DescribeInstanceInformation tells the connected nodes from the others.
    role.addToPolicy(
      new iam.PolicyStatement({
        actions: ['ssm:ListCommands', 'ssm:ListCommandInvocations', 'ssm:GetCommandInvocation', 'ssm:CancelCommand', 'ssm:DescribeInstanceInformation'],
        resources: ['*'],
      }),
    );
    NagSuppressions.addResourceSuppressions(
      role,
      [
        {
          id: 'AwsSolutions-IAM5',
          reason: 'SendCommand on instances is limited by the ssm:resourceTag condition to the fleet\'s tag; ListCommands, ListCommandInvocations, GetCommandInvocation, CancelCommand, DescribeInstanceInformation and GetRandomPassword (granted by the rotation schedule) have no resource-level permissions',
          appliesTo: ['Resource::arn:<AWS::Partition>:ec2:<AWS::Region>:<AWS::AccountId>:instance/*', 'Resource::*'],
        },
      ],
      true,
    );
  }

  private scheduleFrequentRotation(rotation: nodejs.NodejsFunction, expression: string): void {
    const role = new iam.Role(this, 'FrequentRotationRole', { assumedBy: new iam.ServicePrincipal('scheduler.amazonaws.com'), description: 'Starts ticket key rotations' });
    // RotateSecret's caller "also need[s] lambda:InvokeFunction permissions on the rotation function":
    // https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_RotateSecret.html
    role.addToPolicy(new iam.PolicyStatement({ actions: ['lambda:InvokeFunction'], resources: [rotation.functionArn] }));
    new scheduler.Schedule(this, 'FrequentRotation', {
      description: 'Starts the rotations at an interval Secrets Manager\'s own schedule cannot keep evenly',
      schedule: scheduler.ScheduleExpression.expression(expression),
      target: new schedulerTargets.Universal({
        service: 'secretsmanager',
        action: 'rotateSecret',
        // A raw RotateSecret request must carry its own ClientRequestToken (only the SDKs and
        // the CLI make one up). The scheduled time makes it the same for every retry of one start.
        input: scheduler.ScheduleTargetInput.fromObject({
          SecretId: this.secret.secretArn,
          ClientRequestToken: `${SCHEDULED_ROTATION_TOKEN_PREFIX}${scheduler.ContextAttribute.scheduledTime}`,
        }),
        role,
        // Without it the target would grant RotateSecret on every secret.
        policyStatements: [new iam.PolicyStatement({ actions: ['secretsmanager:RotateSecret'], resources: [this.secret.secretArn] })],
        // A start that keeps failing is left to the next one.
        retryAttempts: 3,
        maxEventAge: Duration.seconds(SCHEDULER_MAX_EVENT_AGE_SECONDS),
      }),
    });
  }

  /** Secrets Manager may invoke the rotation function for this account's secrets only (confused deputy). */
  private limitRotationInvokeToThisAccount(rotation: nodejs.NodejsFunction): void {
    const permissions = rotation.node.children.filter(
      (child): child is lambda.CfnPermission => child instanceof lambda.CfnPermission && child.principal === 'secretsmanager.amazonaws.com',
    );
    const [permission] = permissions;
    if (permission === undefined || permissions.length !== 1) throw new Error(`expected the rotation schedule to grant Secrets Manager one invoke permission, found ${permissions.length}`);
    permission.sourceAccount = Aws.ACCOUNT_ID;
  }
}
