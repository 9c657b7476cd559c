import { Annotations, Duration, Stack } from 'aws-cdk-lib';
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import type * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import type * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import type * as sns from 'aws-cdk-lib/aws-sns';
import type * as ssm from 'aws-cdk-lib/aws-ssm';
import { Construct } from 'constructs';
import type { KeyLength } from '../src/core/keyset.js';
import { DEFAULT_ROTATION_INTERVAL_SECONDS, defaultKeyLength, defaultTicketLifetimeSeconds, previousKeysToKeep, rotationCost } from '../src/core/policy.js';
import { rotationScheduleFor } from '../src/core/schedule.js';
import { DEFAULT_FLAVOR, FLAVORS, type ServerFlavor } from '../src/flavors/index.js';
import { FleetVerifier } from './fleet-verifier.js';
import { KeyStore } from './key-store.js';
import { Monitoring } from './monitoring.js';
import { NodeDocuments } from './node-documents.js';
import { SettingError } from './setting-error.js';

/** On tmpfs (/run is one on systemd hosts): keys never reach a disk, a backup or a snapshot. */
export const DEFAULT_KEY_DIRECTORY = '/run/tls-ticket-keys';

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
 * Rotates a fleet's TLS session ticket keys: the one construct to add to a stack. It is made of
 * four concerns, each a construct of its own (their resources keep the logical IDs they had
 * before the split: see Concern): the key set and its rotation (KeyStore), the nodes' documents,
 * association and policy (NodeDocuments), the verifier and its canary (FleetVerifier), and the
 * alarms, dashboard and audit queries (Monitoring).
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
    const retention = props.logRetention ?? logs.RetentionDays.ONE_YEAR;
    // An impossible interval/lifetime pair, for this flavor and this schedule's lateness, fails synth with the policy's own message.
    previousKeysToKeep({ ...scheduledPolicy, ticketLifetimeSeconds: ticketLifetime.toSeconds() });
    const cost = rotationCost(scheduledPolicy);
    if (cost !== undefined) Annotations.of(this).addWarningV2('tls-ticket-keys:rotationCost', cost);
    for (const [name, value] of [['targetTagKey', props.targetTagKey], ['targetTagValue', props.targetTagValue]] as const) {
      if (value.trim() === '') throw new SettingError(`${name} must not be empty: it selects the nodes whose keys rotate`);
    }
    const fleet = { targetTagKey: props.targetTagKey, targetTagValue: props.targetTagValue };

    const store = new KeyStore(this, 'KeyStore', { retention });
    const keyDirectory = props.keyDirectory ?? DEFAULT_KEY_DIRECTORY;
    const nodes = new NodeDocuments(this, 'Nodes', {
      ...fleet,
      settings: {
        flavor,
        keyDirectory,
        includePath: props.includePath ?? `${keyDirectory}/${FLAVORS[flavor].includeFileName}`,
        testCommand: props.testCommand ?? FLAVORS[flavor].commands.test,
        configDumpCommand: props.configDumpCommand ?? FLAVORS[flavor].commands.configDump,
        reloadCommand: props.reloadCommand ?? FLAVORS[flavor].commands.reload,
        allowPersistentKeyDirectory: props.allowPersistentKeyDirectory ?? false,
        ...(props.runtimeSocket !== undefined ? { runtimeSocket: props.runtimeSocket } : {}),
      },
      secret: store.secret,
      key: store.key,
      convergenceSchedule: props.convergenceSchedule ?? 'rate(30 minutes)',
      maxConcurrency,
      retention,
    });
    const verifier = new FleetVerifier(this, 'Verifier', {
      ...fleet,
      keyNames: store.keyNames,
      retention,
      port: props.verifierPort ?? 443,
      canarySchedule: props.canarySchedule ?? 'rate(5 minutes)',
      ...(props.verifierVpcId !== undefined ? { vpcId: props.verifierVpcId } : {}),
      ...(props.verifierSubnetIds !== undefined ? { subnetIds: props.verifierSubnetIds } : {}),
      ...(props.verifierSni !== undefined ? { sni: props.verifierSni } : {}),
      ...(props.verifierStaticNodes !== undefined ? { staticNodes: props.verifierStaticNodes } : {}),
      ...(props.verifierPeersPerNode !== undefined ? { peersPerNode: props.verifierPeersPerNode } : {}),
    });
    this.rotationFunction = store.rotate({
      ...fleet,
      policy: { rotationIntervalSeconds: rotationInterval.toSeconds(), ticketLifetimeSeconds: ticketLifetime.toSeconds(), keyLength, flavor },
      schedule,
      documents: nodes,
      verifierFunction: verifier.function,
      maxConcurrency,
      maxErrors: props.maxErrors ?? '0',
      ...(props.nodeRoleArns !== undefined ? { nodeRoleArns: props.nodeRoleArns } : {}),
    });
    const monitoring = new Monitoring(this, 'Monitoring', {
      rotationLogs: store.rotationLogs,
      verifierFunction: verifier.function,
      queryPrefix: `${Stack.of(this).stackName}/${this.node.id}`,
      skippedNodesAlarmThreshold: props.skippedNodesAlarmThreshold ?? 0,
      ...(props.alarmEmail !== undefined ? { alarmEmail: props.alarmEmail } : {}),
    });

    for (const concern of [store, nodes, verifier, monitoring]) concern.keepFormerIds();

    this.key = store.key;
    this.secret = store.secret;
    this.keyNames = store.keyNames;
    this.rotationLogs = store.rotationLogs;
    this.document = nodes.document;
    this.onboardingDocument = nodes.onboardingDocument;
    this.convergence = nodes.convergence;
    this.nodePolicy = nodes.nodePolicy;
    this.commandOutput = nodes.commandOutput;
    this.verifierFunction = verifier.function;
    if (verifier.securityGroup) this.verifierSecurityGroup = verifier.securityGroup;
    this.alarmTopic = monitoring.alarmTopic;
  }
}
