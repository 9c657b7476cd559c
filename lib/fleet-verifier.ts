import { Aws, Duration, SecretValue, Stack } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import type * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as schedulerTargets from 'aws-cdk-lib/aws-scheduler-targets';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import type * as ssm from 'aws-cdk-lib/aws-ssm';
import { NagSuppressions } from 'cdk-nag';
import type { Construct } from 'constructs';
import { VERIFIER_ENVIRONMENT as VERIFIER_ENV, VERIFIER_SERVICE, VERIFIER_TIMEOUT_SECONDS } from '../src/aws/contract.js';
import { Concern } from './concern.js';
import { restrictReads } from './restrict-reads.js';
import { ticketKeyFunction } from './ticket-key-function.js';
import { SettingError } from './setting-error.js';

/**
 * One vCPU ("At 1,769 MB, a function has the equivalent of one vCPU":
 * https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html). The client side of a
 * handshake measured about 1 ms of CPU, 16 handshakes a node above 12 nodes: 10,000 nodes took
 * 156 s of the 300 s here, and the process grew by up to 444 MiB (npm run bench -- fleet-scale).
 */
const VERIFIER_MEMORY_MB = 1769;

export interface FleetVerifierProps {
  keyNames: ssm.IStringParameter;
  targetTagKey: string;
  targetTagValue: string;
  retention: logs.RetentionDays;
  /** The nodes' VPC: the verifier runs in it and connects to private addresses. */
  vpcId?: string;
  subnetIds?: string[];
  port: number;
  sni?: string;
  staticNodes?: string[];
  peersPerNode?: number;
  canarySchedule: string;
}

/**
 * The proof on the wire: the verifier function (capture before a rotation, verify after it,
 * and the canary), the secret where it keeps the tickets of a rotation in progress, and the
 * schedule that runs the canary.
 */
export class FleetVerifier extends Concern {
  readonly function: nodejs.NodejsFunction;
  readonly securityGroup?: ec2.SecurityGroup;

  constructor(scope: Construct, id: string, props: FleetVerifierProps) {
    super(scope, id);
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
    const logGroup = new logs.LogGroup(this, 'VerifierLogs', { retention: props.retention });
    const role = new iam.Role(this, 'VerifierRole', { assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'), description: 'TLS ticket key verifier' });
    role.addToPolicy(new iam.PolicyStatement({ actions: ['logs:CreateLogStream', 'logs:PutLogEvents'], resources: [logGroup.logGroupArn] }));
    role.addToPolicy(new iam.PolicyStatement({ actions: ['ec2:DescribeInstances'], resources: ['*'] }));
    let network: Pick<nodejs.NodejsFunctionProps, 'vpc' | 'vpcSubnets' | 'securityGroups'> = {};
    if (props.vpcId !== undefined) {
      const subnetIds = props.subnetIds ?? [];
      if (subnetIds.length === 0) throw new SettingError('verifierSubnetIds is required with verifierVpcId: the subnets the verifier runs in');
      const vpc = ec2.Vpc.fromVpcAttributes(this, 'NodesVpc', { vpcId: props.vpcId, availabilityZones: Stack.of(this).availabilityZones });
      this.securityGroup = new ec2.SecurityGroup(this, 'VerifierSecurityGroup', { vpc, allowAllOutbound: false, description: 'TLS ticket key verifier' });
      this.securityGroup.addEgressRule(ec2.Peer.anyIpv4(), ec2.Port.tcp(props.port), 'TLS handshakes with the nodes');
      this.securityGroup.addEgressRule(ec2.Peer.anyIpv4(), ec2.Port.tcp(443), 'AWS APIs (EC2, Secrets Manager) through NAT or endpoints');
      network = {
        vpc,
        vpcSubnets: { subnets: subnetIds.map((subnetId, index) => ec2.Subnet.fromSubnetId(this, `Subnet${index}`, subnetId)) },
        securityGroups: [this.securityGroup],
      };
      role.addToPolicy(
        new iam.PolicyStatement({
          actions: ['ec2:CreateNetworkInterface', 'ec2:DescribeNetworkInterfaces', 'ec2:DeleteNetworkInterface', 'ec2:AssignPrivateIpAddresses', 'ec2:UnassignPrivateIpAddresses'],
          resources: ['*'],
        }),
      );
    }
    this.function = ticketKeyFunction(this, 'VerifierFunction', {
      description: 'Verifies by TLS handshakes that every node encrypts with the current ticket key and tickets resume across nodes',
      handlerFile: 'verifier.ts',
      memorySize: VERIFIER_MEMORY_MB,
      timeout: Duration.seconds(VERIFIER_TIMEOUT_SECONDS),
      logGroup,
      role,
      service: VERIFIER_SERVICE,
      ...network,
      environment: {
        [VERIFIER_ENV.keyNamesParameter]: props.keyNames.parameterName,
        [VERIFIER_ENV.ticketStoreSecretArn]: ticketStore.secretArn,
        [VERIFIER_ENV.targetTagKey]: props.targetTagKey,
        [VERIFIER_ENV.targetTagValue]: props.targetTagValue,
        [VERIFIER_ENV.port]: String(props.port),
        [VERIFIER_ENV.addresses]: props.vpcId !== undefined ? 'private' : 'public',
        ...(props.sni ? { [VERIFIER_ENV.sni]: props.sni } : {}),
        ...(props.staticNodes?.length ? { [VERIFIER_ENV.staticNodes]: props.staticNodes.join(',') } : {}),
        ...(props.peersPerNode ? { [VERIFIER_ENV.peersPerNode]: String(props.peersPerNode) } : {}),
      },
    });
    // The canary reads the key names the rotation publishes, never the key set; the ticket store
    // is the verifier's own. Only the calls it makes: no Describe, no UpdateSecret.
    role.addToPolicy(new iam.PolicyStatement({ actions: ['ssm:GetParameter'], resources: [props.keyNames.parameterArn] }));
    // Each value it writes replaces the one before, which keeps no stage (Describe, UpdateSecretVersionStage).
    role.addToPolicy(
      new iam.PolicyStatement({
        actions: ['secretsmanager:GetSecretValue', 'secretsmanager:PutSecretValue', 'secretsmanager:DescribeSecret', 'secretsmanager:UpdateSecretVersionStage'],
        resources: [ticketStore.secretArn],
      }),
    );
    restrictReads(ticketStore, ticketStoreKey, [role.roleArn], { onlyCurrent: true });
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
    this.scheduleCanary(props.canarySchedule);
  }

  private scheduleCanary(expression: string): void {
    const role = new iam.Role(this, 'CanaryScheduleRole', { assumedBy: new iam.ServicePrincipal('scheduler.amazonaws.com'), description: 'Starts the ticket key canary' });
    role.addToPolicy(new iam.PolicyStatement({ actions: ['lambda:InvokeFunction'], resources: [this.function.functionArn] }));
    new scheduler.Schedule(this, 'Canary', {
      description: 'Verifies the fleet\'s ticket keys and cross-node resumption on a schedule',
      schedule: scheduler.ScheduleExpression.expression(expression),
      target: new schedulerTargets.LambdaInvoke(this.function, { input: scheduler.ScheduleTargetInput.fromObject({ action: 'canary' }), role }),
    });
    NagSuppressions.addResourceSuppressions(
      role,
      [{ id: 'AwsSolutions-IAM5', reason: 'The scheduler target grants invoking the verifier function and its versions (ARN:*): this one function only' }],
      true,
    );
  }
}
