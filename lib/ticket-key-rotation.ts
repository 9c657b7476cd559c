import { join } from 'node:path';
import { Annotations, ArnFormat, Aws, Duration, SecretValue, Stack } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cloudwatchActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as schedulerTargets from 'aws-cdk-lib/aws-scheduler-targets';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as snsSubscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import * as ssm from 'aws-cdk-lib/aws-ssm';
import { NagSuppressions } from 'cdk-nag';
import { Construct } from 'constructs';
import {
  METRIC_NAMESPACE,
  ROTATION_ENVIRONMENT as ROTATION_ENV,
  ROTATION_METRICS,
  ROTATION_SERVICE,
  VERIFIER_ENVIRONMENT as VERIFIER_ENV,
  VERIFIER_METRICS,
  VERIFIER_SERVICE,
  VERIFIER_TIMEOUT_SECONDS,
  type RotationMetric,
  type VerifierMetric,
} from '../src/aws/contract.js';
import { EMPTY_KEY_SET_PLACEHOLDER, type KeyLength } from '../src/core/keyset.js';
import { DEFAULT_ROTATION_INTERVAL_SECONDS, defaultKeyLength, defaultTicketLifetimeSeconds, previousKeysToKeep, rotationCost } from '../src/core/policy.js';
import { DEFAULT_FLAVOR, FLAVORS, type ServerFlavor } from '../src/flavors/index.js';
import { rotationScheduleFor, SCHEDULER_MAX_EVENT_AGE_SECONDS } from '../src/core/schedule.js';
import { AWSCURRENT, AWSPENDING, REVOCATION_TAG } from '../src/core/secret-store.js';
import { PROJECT_ROOT } from '../src/project-root.js';
import { nodeApplierDocument, nodeOnboardingDocument, type NodeApplierSettings } from './node-applier-document.js';

/** Powertools Metrics puts each function's service name in a `service` dimension. */
/** On tmpfs (/run is one on systemd hosts): keys never reach a disk, a backup or a snapshot. */
export const DEFAULT_KEY_DIRECTORY = '/run/tls-ticket-keys';

/** The file each flavor loads from the key directory, and how its config is checked, shown and reloaded, unless set. */
/**
 * Secrets Manager's own schedule while EventBridge Scheduler starts the rotations: its longest.
 * Removing the schedule instead would not stop it (aws-cdk#27460), and with AutomaticallyAfterDays
 * "Secrets Manager calculates the next rotation date based on the previous rotation"
 * (https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_RotationRulesType.html),
 * so the Scheduler's far more frequent rotations keep pushing it back: it never starts one.
 */
const SCHEDULER_ROTATION_NATIVE_INTERVAL = Duration.days(1000);
const VERIFIER_MEMORY_MB = 1769;
/** With a scheduled time (2026-11-25T18:00:00Z) it makes a token of 39 characters: Secrets Manager wants 32 to 64. */
export const SCHEDULED_ROTATION_TOKEN_PREFIX = 'scheduled-rotation-';

export interface TicketKeyRotationProps {
  /** The EC2 tag that selects the fleet's nodes. */
  readonly targetTagKey: string;
  readonly targetTagValue: string;
  /**
   * The nodes' instance roles: with the rotation function (and the verifier), the only principals
   * that may read the key set. @default any role tagged with targetTagKey=targetTagValue (tag the
   * nodes' instance role itself, not only the instances)
   */
  readonly nodeRoleArns?: string[];
  /** @default 12 hours */
  readonly rotationInterval?: Duration;
  /** How long clients may resume with a ticket (nginx `ssl_session_timeout`). @default 12 hours, or the longest whole number of hours the flavor's keys cover at this interval (HAProxy every 12 hours: 10 hours; Apache: no longer than the interval) */
  readonly ticketLifetime?: Duration;
  /** @default 80, or the one length the flavor reads (Apache: 48) */
  readonly keyLength?: KeyLength;
  /** The server terminating TLS on the nodes. Apache holds one key: each rotation costs every client a full handshake, and synth warns so. @default nginx */
  readonly flavor?: ServerFlavor;
  /** On a memory filesystem unless allowPersistentKeyDirectory. @default /run/tls-ticket-keys */
  readonly keyDirectory?: string;
  /** nginx and apache: the file their config includes; haproxy: the tls-ticket-keys file. @default in keyDirectory, per flavor (src/flavors/) */
  readonly includePath?: string;
  /** @default per flavor */
  readonly testCommand?: string;
  /** Prints the config the server loads, to check that it loads the managed keys. @default per flavor */
  readonly configDumpCommand?: string;
  /** Accept a key directory on a persistent filesystem, where keys outlive their rotation. @default false */
  readonly allowPersistentKeyDirectory?: boolean;
  /** @default per flavor */
  readonly reloadCommand?: string;
  /** haproxy: its runtime API socket (`stats socket … level admin`); keys then rotate without a reload. @default none */
  readonly runtimeSocket?: string;
  /** SSM rate control. @default 50 */
  readonly maxConcurrency?: string;
  /** SSM rate control: errors tolerated before SSM stops sending. @default 0 */
  readonly maxErrors?: string;
  /** How often the association re-applies AWSCURRENT so late and new nodes converge. @default rate(30 minutes) */
  readonly convergenceSchedule?: string;
  /** Retention of the rotation function's logs and the nodes' command output. @default one year */
  readonly logRetention?: logs.RetentionDays;
  /** The nodes' VPC: the verifier runs in it and connects to private addresses. @default no VPC, public addresses */
  readonly verifierVpcId?: string;
  /** Subnets for the verifier in that VPC (with a NAT gateway or endpoints for EC2, Secrets Manager). */
  readonly verifierSubnetIds?: string[];
  /** TLS port on the nodes. @default 443 */
  readonly verifierPort?: number;
  /** SNI the verifier sends. @default none */
  readonly verifierSni?: string;
  /** Fixed nodes ([NAME=]HOST:PORT[/SNI], NAME the instance id) instead of discovery by tag. @default discover by tag */
  readonly verifierStaticNodes?: string[];
  /** Each node's ticket is tried on this many peers. @default every other node up to 12 nodes, else 6 */
  readonly verifierPeersPerNode?: number;
  /** How often the canary verifies the fleet. @default rate(5 minutes) */
  readonly canarySchedule?: string;
  /** Email address subscribed to the alarms topic. @default none */
  readonly alarmEmail?: string;
  /** Tagged nodes a rotation may skip (stopped, or not connected to SSM) before the NodesSkipped alarm fires. @default 0 */
  readonly skippedNodesAlarmThreshold?: number;
}

/**
 * Rotates a fleet's TLS session ticket keys: the key set secret (KMS-encrypted), the rotation
 * function that Secrets Manager runs on a schedule or on demand, the SSM document that applies
 * a key set on each node, the association that keeps late nodes converged, the policy the
 * nodes' role needs, and saved audit queries.
 */
export class TicketKeyRotation extends Construct {
  readonly key: kms.Key;
  readonly secret: secretsmanager.Secret;
  readonly rotationFunction: nodejs.NodejsFunction;
  readonly document: ssm.CfnDocument;
  /** Run once per node (Run Command) before its first rotation: see applier/onboard-node.sh. */
  readonly onboardingDocument: ssm.CfnDocument;
  readonly nodePolicy: iam.ManagedPolicy;
  readonly commandOutput: logs.LogGroup;
  readonly rotationLogs: logs.LogGroup;
  readonly verifierFunction: nodejs.NodejsFunction;
  readonly verifierSecurityGroup?: ec2.ISecurityGroup;
  readonly alarmTopic: sns.Topic;
  /** Applies AWSCURRENT on every tagged node on a schedule, and at once on a newly tagged one. */
  readonly convergence: ssm.CfnAssociation;
  /** The current and pending key names (no material): what the verifier checks the nodes against. */
  readonly keyNames: ssm.StringParameter;

  constructor(scope: Construct, id: string, props: TicketKeyRotationProps) {
    super(scope, id);
    const rotationInterval = props.rotationInterval ?? Duration.seconds(DEFAULT_ROTATION_INTERVAL_SECONDS);
    const flavor = props.flavor ?? DEFAULT_FLAVOR;
    const keyLength = props.keyLength ?? defaultKeyLength(flavor);
    const schedule = rotationScheduleFor(rotationInterval.toSeconds());
    const scheduledPolicy = { rotationIntervalSeconds: rotationInterval.toSeconds(), rotationLatenessSeconds: schedule.latenessSeconds, keyLength, flavor };
    const ticketLifetime = props.ticketLifetime ?? Duration.seconds(defaultTicketLifetimeSeconds(scheduledPolicy));
    const maxConcurrency = props.maxConcurrency ?? '50';
    const maxErrors = props.maxErrors ?? '0';
    const retention = props.logRetention ?? logs.RetentionDays.ONE_YEAR;
    // An impossible interval/lifetime pair, for this flavor and this schedule's lateness, fails synth with the policy's own message.
    previousKeysToKeep({ ...scheduledPolicy, ticketLifetimeSeconds: ticketLifetime.toSeconds() });
    const cost = rotationCost(scheduledPolicy);
    if (cost !== undefined) Annotations.of(this).addWarningV2('tls-ticket-keys:rotationCost', cost);
    for (const [name, value] of [['targetTagKey', props.targetTagKey], ['targetTagValue', props.targetTagValue]] as const) {
      if (value.trim() === '') throw new Error(`${name} must not be empty: it selects the nodes whose keys rotate`);
    }

    this.key = new kms.Key(this, 'Key', { enableKeyRotation: true, description: 'Encrypts the TLS session ticket key set' });
    this.secret = new secretsmanager.Secret(this, 'KeySet', {
      description: 'TLS session ticket key set (current, next, previous keys); written only by its rotation function',
      encryptionKey: this.key,
      // No key material in CloudFormation: the first rotation, at deploy, writes generation 1.
      secretStringValue: SecretValue.unsafePlainText(EMPTY_KEY_SET_PLACEHOLDER),
    });

    this.commandOutput = new logs.LogGroup(this, 'CommandOutput', { retention });
    this.rotationLogs = new logs.LogGroup(this, 'RotationLogs', { retention });

    const keyDirectory = props.keyDirectory ?? DEFAULT_KEY_DIRECTORY;
    const nodeSettings: NodeApplierSettings = {
      flavor,
      keyDirectory,
      includePath: props.includePath ?? `${keyDirectory}/${FLAVORS[flavor].includeFileName}`,
      testCommand: props.testCommand ?? FLAVORS[flavor].commands.test,
      configDumpCommand: props.configDumpCommand ?? FLAVORS[flavor].commands.configDump,
      reloadCommand: props.reloadCommand ?? FLAVORS[flavor].commands.reload,
      allowPersistentKeyDirectory: props.allowPersistentKeyDirectory ?? false,
      ...(props.runtimeSocket !== undefined ? { runtimeSocket: props.runtimeSocket } : {}),
    };
    this.document = new ssm.CfnDocument(this, 'NodeApplier', { documentType: 'Command', content: nodeApplierDocument(nodeSettings) });
    this.onboardingDocument = new ssm.CfnDocument(this, 'NodeOnboarding', { documentType: 'Command', content: nodeOnboardingDocument(nodeSettings, { arn: this.secret.secretArn, region: Stack.of(this).region }) });
    const documentArn = Stack.of(this).formatArn({ service: 'ssm', resource: 'document', resourceName: this.document.ref });

    // The names of the current and pending keys, written by the rotation: the verifier checks the
    // wire against them and reads no key set. Names are in every ticket anyway.
    this.keyNames = new ssm.StringParameter(this, 'KeyNames', {
      description: 'Names of the current and pending TLS ticket keys (no key material), published by the rotation function',
      stringValue: '{}',
    });
    const verifier = this.createVerifier(props, retention);
    this.verifierFunction = verifier.fn;
    if (verifier.securityGroup) this.verifierSecurityGroup = verifier.securityGroup;
    const rotationRole = this.rotationRole();
    this.rotationFunction = new nodejs.NodejsFunction(this, 'RotationFunction', {
      description: 'Secrets Manager rotation of the TLS session ticket key set across the tagged fleet',
      entry: join(PROJECT_ROOT, 'lambda', 'rotation.ts'),
      handler: 'handler',
      runtime: lambda.Runtime.NODEJS_24_X,
      architecture: lambda.Architecture.ARM_64,
      memorySize: 256,
      // setSecret waits for every node; each step has the whole Lambda limit.
      timeout: Duration.minutes(15),
      logGroup: this.rotationLogs,
      role: rotationRole,
      projectRoot: PROJECT_ROOT,
      depsLockFilePath: join(PROJECT_ROOT, 'package-lock.json'),
      bundling: { forceDockerBundling: false, minify: true, sourceMap: false, target: 'node24' },
      environment: {
        [ROTATION_ENV.keyLength]: String(keyLength),
        [ROTATION_ENV.serverFlavor]: flavor,
        [ROTATION_ENV.rotationIntervalSeconds]: String(rotationInterval.toSeconds()),
        [ROTATION_ENV.ticketLifetimeSeconds]: String(ticketLifetime.toSeconds()),
        [ROTATION_ENV.documentName]: this.document.ref,
        [ROTATION_ENV.targetTagKey]: props.targetTagKey,
        [ROTATION_ENV.targetTagValue]: props.targetTagValue,
        [ROTATION_ENV.maxConcurrency]: maxConcurrency,
        [ROTATION_ENV.maxErrors]: maxErrors,
        [ROTATION_ENV.commandOutputLogGroup]: this.commandOutput.logGroupName,
        [ROTATION_ENV.verifierFunctionName]: this.verifierFunction.functionName,
        [ROTATION_ENV.keyNamesParameter]: this.keyNames.parameterName,
        POWERTOOLS_SERVICE_NAME: ROTATION_SERVICE,
      },
    });
    rotationRole.addToPolicy(new iam.PolicyStatement({ actions: ['lambda:InvokeFunction'], resources: [this.verifierFunction.functionArn] }));
    rotationRole.addToPolicy(new iam.PolicyStatement({ actions: ['ssm:PutParameter'], resources: [this.keyNames.parameterArn] }));
    this.grantRotation(rotationRole, documentArn, props.targetTagKey, props.targetTagValue);

    const rotationSchedule = this.secret.addRotationSchedule('Rotation', {
      rotationLambda: this.rotationFunction,
      // Duration 0 leaves rotation configured ("Rotate secret immediately" works) with no schedule of its own.
      automaticallyAfter: schedule.kind === 'secrets-manager' ? rotationInterval : SCHEDULER_ROTATION_NATIVE_INTERVAL,
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
      this.scheduleFrequentRotation(schedule.expression);
    }
    this.limitRotationInvokeToThisAccount();

    this.convergence = new ssm.CfnAssociation(this, 'Convergence', {
      name: this.document.ref,
      targets: [{ key: `tag:${props.targetTagKey}`, values: [props.targetTagValue] }],
      parameters: { SecretId: [this.secret.secretArn] },
      scheduleExpression: props.convergenceSchedule ?? 'rate(30 minutes)',
      applyOnlyAtCronInterval: false,
      maxConcurrency,
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
          resources: [this.secret.secretArn],
          conditions: { 'ForAnyValue:StringEquals': { 'secretsmanager:VersionStage': [AWSCURRENT, AWSPENDING] } },
        }),
        new iam.PolicyStatement({
          actions: ['kms:Decrypt'],
          resources: [this.key.keyArn],
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
    NagSuppressions.addResourceSuppressions(this.nodePolicy, [
      { id: 'AwsSolutions-IAM5', reason: 'logs:DescribeLogGroups has no resource-level permissions; the stream actions are limited to the command output group\'s own streams', appliesTo: ['Resource::*', `Resource::<${Stack.of(this).getLogicalId(this.commandOutput.node.defaultChild as logs.CfnLogGroup)}.Arn>`] },
    ]);

    this.restrictReads(this.secret, this.key, [rotationRole.roleArn, ...(props.nodeRoleArns ?? [])], {
      ...(props.nodeRoleArns === undefined ? { taggedReaders: { key: props.targetTagKey, value: props.targetTagValue } } : {}),
    });
    this.saveAuditQueries();
    this.scheduleCanary(props.canarySchedule ?? 'rate(5 minutes)');
    this.alarmTopic = this.createAlarms(props.alarmEmail, props.skippedNodesAlarmThreshold ?? 0);
    this.createDashboard();
  }

  private createVerifier(props: TicketKeyRotationProps, retention: logs.RetentionDays): { fn: nodejs.NodejsFunction; role: iam.Role; securityGroup?: ec2.SecurityGroup } {
    const port = props.verifierPort ?? 443;
    // A key of its own: the verifier uses it, and no key the key set's is encrypted with.
    const ticketStoreKey = new kms.Key(this, 'TicketStoreKey', { enableKeyRotation: true, description: 'Encrypts the sessions the ticket key verifier keeps during a rotation' });
    const ticketStore = new secretsmanager.Secret(this, 'TicketStore', {
      description: 'Session tickets the verifier takes before a rotation, to resume after it (holds session secrets; overwritten every rotation)',
      encryptionKey: ticketStoreKey,
      secretStringValue: SecretValue.unsafePlainText('{}'),
    });
    NagSuppressions.addResourceSuppressions(ticketStore, [
      { id: 'AwsSolutions-SMG4', reason: 'Holds only the tickets of the rotation in progress; the verifier overwrites it at every rotation' },
    ]);
    const logGroup = new logs.LogGroup(this, 'VerifierLogs', { retention });
    const role = new iam.Role(this, 'VerifierRole', { assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'), description: 'TLS ticket key verifier' });
    role.addToPolicy(new iam.PolicyStatement({ actions: ['logs:CreateLogStream', 'logs:PutLogEvents'], resources: [logGroup.logGroupArn] }));
    role.addToPolicy(new iam.PolicyStatement({ actions: ['ec2:DescribeInstances'], resources: ['*'] }));
    let vpcSettings: Pick<nodejs.NodejsFunctionProps, 'vpc' | 'vpcSubnets' | 'securityGroups'> = {};
    let securityGroup: ec2.SecurityGroup | undefined;
    if (props.verifierVpcId !== undefined) {
      const subnetIds = props.verifierSubnetIds ?? [];
      if (subnetIds.length === 0) throw new Error('verifierSubnetIds is required with verifierVpcId: the subnets the verifier runs in');
      const vpc = ec2.Vpc.fromVpcAttributes(this, 'NodesVpc', { vpcId: props.verifierVpcId, availabilityZones: Stack.of(this).availabilityZones });
      securityGroup = new ec2.SecurityGroup(this, 'VerifierSecurityGroup', { vpc, allowAllOutbound: false, description: 'TLS ticket key verifier' });
      securityGroup.addEgressRule(ec2.Peer.anyIpv4(), ec2.Port.tcp(port), 'TLS handshakes with the nodes');
      securityGroup.addEgressRule(ec2.Peer.anyIpv4(), ec2.Port.tcp(443), 'AWS APIs (EC2, Secrets Manager) through NAT or endpoints');
      vpcSettings = {
        vpc,
        vpcSubnets: { subnets: subnetIds.map((id, index) => ec2.Subnet.fromSubnetId(this, `Subnet${index}`, id)) },
        securityGroups: [securityGroup],
      };
      role.addToPolicy(
        new iam.PolicyStatement({
          actions: ['ec2:CreateNetworkInterface', 'ec2:DescribeNetworkInterfaces', 'ec2:DeleteNetworkInterface', 'ec2:AssignPrivateIpAddresses', 'ec2:UnassignPrivateIpAddresses'],
          resources: ['*'],
        }),
      );
    }
    const fn = new nodejs.NodejsFunction(this, 'VerifierFunction', {
      description: 'Verifies by TLS handshakes that every node encrypts with the current ticket key and tickets resume across nodes',
      entry: join(PROJECT_ROOT, 'lambda', 'verifier.ts'),
      handler: 'handler',
      runtime: lambda.Runtime.NODEJS_24_X,
      architecture: lambda.Architecture.ARM_64,
      // One vCPU ("At 1,769 MB, a function has the equivalent of one vCPU":
      // https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html). The client side of
      // a handshake measured about 1 ms of CPU, 16 handshakes a node above 12 nodes: 10,000 nodes
      // took 156 s of the 300 s here, and the process grew by up to 444 MiB (npm run bench -- fleet-scale).
      memorySize: VERIFIER_MEMORY_MB,
      timeout: Duration.seconds(VERIFIER_TIMEOUT_SECONDS),
      logGroup,
      role,
      projectRoot: PROJECT_ROOT,
      depsLockFilePath: join(PROJECT_ROOT, 'package-lock.json'),
      bundling: { forceDockerBundling: false, minify: true, sourceMap: false, target: 'node24' },
      ...vpcSettings,
      environment: {
        [VERIFIER_ENV.keyNamesParameter]: this.keyNames.parameterName,
        [VERIFIER_ENV.ticketStoreSecretArn]: ticketStore.secretArn,
        [VERIFIER_ENV.targetTagKey]: props.targetTagKey,
        [VERIFIER_ENV.targetTagValue]: props.targetTagValue,
        [VERIFIER_ENV.port]: String(port),
        [VERIFIER_ENV.addresses]: props.verifierVpcId !== undefined ? 'private' : 'public',
        ...(props.verifierSni ? { [VERIFIER_ENV.sni]: props.verifierSni } : {}),
        ...(props.verifierStaticNodes?.length ? { [VERIFIER_ENV.staticNodes]: props.verifierStaticNodes.join(',') } : {}),
        ...(props.verifierPeersPerNode ? { [VERIFIER_ENV.peersPerNode]: String(props.verifierPeersPerNode) } : {}),
        POWERTOOLS_SERVICE_NAME: VERIFIER_SERVICE,
      },
    });
    // The canary reads the key names the rotation publishes, never the key set; the ticket store
    // is the verifier's own. Only the calls it makes: no Describe, no UpdateSecret.
    role.addToPolicy(new iam.PolicyStatement({ actions: ['ssm:GetParameter'], resources: [this.keyNames.parameterArn] }));
    // Each value it writes replaces the one before, which keeps no stage (Describe, UpdateSecretVersionStage).
    role.addToPolicy(
      new iam.PolicyStatement({
        actions: ['secretsmanager:GetSecretValue', 'secretsmanager:PutSecretValue', 'secretsmanager:DescribeSecret', 'secretsmanager:UpdateSecretVersionStage'],
        resources: [ticketStore.secretArn],
      }),
    );
    this.restrictReads(ticketStore, ticketStoreKey, [role.roleArn], { onlyCurrent: true });
    role.addToPolicy(
      new iam.PolicyStatement({
        actions: ['kms:Decrypt', 'kms:GenerateDataKey'],
        resources: [ticketStoreKey.keyArn],
        conditions: { StringEquals: { 'kms:ViaService': `secretsmanager.${Aws.REGION}.amazonaws.com` } },
      }),
    );
    NagSuppressions.addResourceSuppressions(
      role,
      [{ id: 'AwsSolutions-IAM5', reason: 'ec2:DescribeInstances and the Lambda VPC network-interface actions have no resource-level permissions', appliesTo: ['Resource::*'] }],
      true,
    );
    return { fn, role, ...(securityGroup ? { securityGroup } : {}) };
  }

  /**
   * Nobody but `readers` reads `secret`, whatever their own policies allow (an account
   * administrator's `*` included): a Deny in the secret's policy, and the same Deny on kms:Decrypt
   * in its key's policy. Secrets Manager's own check of the key when a secret is created
   * ("SecretVersionId": "RequestToValidateKeyAccess", which decrypts no secret) stays open, so
   * that CloudFormation can create it:
   * https://docs.aws.amazon.com/secretsmanager/latest/userguide/security-encryption.html
   * `taggedReaders` adds the roles carrying that tag. `onlyCurrent` denies, to everyone, a read of
   * anything but AWSCURRENT named in the request: a replaced value is never read again.
   */
  private restrictReads(secret: secretsmanager.Secret, key: kms.Key, readers: string[], options: { taggedReaders?: { key: string; value: string }; onlyCurrent?: boolean }): void {
    const notAReader: Record<string, Record<string, string | string[]>> = {
      ArnNotEquals: { 'aws:PrincipalArn': readers },
      ...(options.taggedReaders ? { StringNotEquals: { [`aws:PrincipalTag/${options.taggedReaders.key}`]: options.taggedReaders.value } } : {}),
    };
    secret.addToResourcePolicy(
      new iam.PolicyStatement({ sid: 'OnlyItsReadersRead', effect: iam.Effect.DENY, principals: [new iam.AnyPrincipal()], actions: ['secretsmanager:GetSecretValue'], resources: ['*'], conditions: notAReader }),
    );
    if (options.onlyCurrent) {
      secret.addToResourcePolicy(
        new iam.PolicyStatement({
          sid: 'OnlyTheCurrentValue',
          effect: iam.Effect.DENY,
          principals: [new iam.AnyPrincipal()],
          actions: ['secretsmanager:GetSecretValue'],
          resources: ['*'],
          conditions: { StringNotEquals: { 'secretsmanager:VersionStage': AWSCURRENT } },
        }),
      );
    }
    key.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'OnlyItsReadersDecrypt',
        effect: iam.Effect.DENY,
        principals: [new iam.AnyPrincipal()],
        actions: ['kms:Decrypt'],
        resources: ['*'],
        conditions: { ...notAReader, StringNotEquals: { ...notAReader.StringNotEquals, 'kms:EncryptionContext:SecretVersionId': 'RequestToValidateKeyAccess' } },
      }),
    );
  }

  private scheduleCanary(expression: string): void {
    const role = new iam.Role(this, 'CanaryScheduleRole', { assumedBy: new iam.ServicePrincipal('scheduler.amazonaws.com'), description: 'Starts the ticket key canary' });
    role.addToPolicy(new iam.PolicyStatement({ actions: ['lambda:InvokeFunction'], resources: [this.verifierFunction.functionArn] }));
    new scheduler.Schedule(this, 'Canary', {
      description: 'Verifies the fleet\'s ticket keys and cross-node resumption on a schedule',
      schedule: scheduler.ScheduleExpression.expression(expression),
      target: new schedulerTargets.LambdaInvoke(this.verifierFunction, { input: scheduler.ScheduleTargetInput.fromObject({ action: 'canary' }), role }),
    });
    NagSuppressions.addResourceSuppressions(
      role,
      [{ id: 'AwsSolutions-IAM5', reason: 'The scheduler target grants invoking the verifier function and its versions (ARN:*): this one function only' }],
      true,
    );
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

  /** Its own role rather than the AWS managed basic execution role: it writes only its own log group. */
  private rotationRole(): iam.Role {
    const role = new iam.Role(this, 'RotationRole', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: 'TLS ticket key rotation function',
    });
    role.addToPolicy(new iam.PolicyStatement({ actions: ['logs:CreateLogStream', 'logs:PutLogEvents'], resources: [this.rotationLogs.logGroupArn] }));
    return role;
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

  private scheduleFrequentRotation(expression: string): void {
    const role = new iam.Role(this, 'FrequentRotationRole', { assumedBy: new iam.ServicePrincipal('scheduler.amazonaws.com'), description: 'Starts ticket key rotations' });
    // RotateSecret's caller "also need[s] lambda:InvokeFunction permissions on the rotation function":
    // https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_RotateSecret.html
    role.addToPolicy(new iam.PolicyStatement({ actions: ['lambda:InvokeFunction'], resources: [this.rotationFunction.functionArn] }));
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
  private limitRotationInvokeToThisAccount(): void {
    const permissions = this.rotationFunction.node.children.filter(
      (child): child is lambda.CfnPermission => child instanceof lambda.CfnPermission && child.principal === 'secretsmanager.amazonaws.com',
    );
    const [permission] = permissions;
    if (permission === undefined || permissions.length !== 1) throw new Error(`expected the rotation schedule to grant Secrets Manager one invoke permission, found ${permissions.length}`);
    permission.sourceAccount = Aws.ACCOUNT_ID;
  }

  private saveAuditQueries(): void {
    const prefix = `${Stack.of(this).stackName}/${this.node.id}`;
    new logs.QueryDefinition(this, 'RotationHistory', {
      queryDefinitionName: `${prefix}/rotation-history`,
      logGroups: [this.rotationLogs],
      queryString: new logs.QueryString({
        fields: ['@timestamp', 'versionId', 'kind', 'step', 'outcome', 'generation', 'keyNames', 'nodesUpdated', 'nodesFailed', 'error'],
        filterStatements: ['message = "rotation step"', 'step in ["createSecret", "setSecret", "finishSecret"] or outcome = "failed"'],
        sort: '@timestamp desc',
      }),
    });
    new logs.QueryDefinition(this, 'FailedNodes', {
      queryDefinitionName: `${prefix}/failed-nodes`,
      logGroups: [this.rotationLogs],
      queryString: new logs.QueryString({
        fields: ['@timestamp', 'versionId', 'step', 'generation', 'failedNodes'],
        filterStatements: ['message = "rotation step"', 'nodesFailed > 0'],
        sort: '@timestamp desc',
      }),
    });
    new logs.QueryDefinition(this, 'Revocations', {
      queryDefinitionName: `${prefix}/revocations`,
      logGroups: [this.rotationLogs],
      queryString: new logs.QueryString({
        fields: ['@timestamp', 'requestedBy', 'generation', 'versionId', 'step', 'outcome', 'nodesFailed', 'error'],
        filterStatements: ['message = "revocation"'],
        sort: '@timestamp desc',
      }),
    });
  }
}
