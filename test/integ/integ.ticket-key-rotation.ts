/**
 * The integration test on a real AWS account (`npm run integ`, with integ-runner): a VPC with no
 * NAT gateway, two nginx nodes, the TicketKeyRotation construct with its verifier in that VPC,
 * then two rotations proved by the Secrets Manager rotation itself, the verifier and the audit
 * log. Offline, `npm test` synthesizes it and holds it to its snapshot
 * (integ.ticket-key-rotation.ts.snapshot/): see test/cdk/integ-snapshot.test.ts.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ExpectedResult, IntegTest, Match, type IApiCall, type IDeployAssert } from '@aws-cdk/integ-tests-alpha';
import { App, Aws, Duration, RemovalPolicies, Stack, Tags, type StackProps } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import type { Construct } from 'constructs';
import { TicketKeyRotation } from '../../lib/ticket-key-rotation.js';
import { PROJECT_ROOT } from '../../src/project-root.js';

/** A tag of its own, so that no rotation of this test can reach a node of a real fleet in the account. */
const FLEET_TAG = { key: 'TicketKeyIntegFleet', value: 'integ' };
const NODE_COUNT = 2;
/** The file with the nodes' TLS server block (test/integ/node/ticket-keys-integ.conf): what onboarding edits. */
const NODE_CONFIG_FILE = '/etc/nginx/conf.d/ticket-keys-integ.conf';
const NODE_FILES = ['shared-certificate.sh', 'ticket-keys-integ.conf', 'setup-node.sh'];
const NODE_DIRECTORY = '/opt/ticket-keys-integ';

/** The user data: the files of test/integ/node/ written out, then setup-node.sh run; the instance signals CloudFormation with its exit code. */
function nodeUserData(certificateSeed: secretsmanager.ISecret): ec2.UserData {
  const userData = ec2.UserData.forLinux();
  userData.addCommands(
    `export CERTIFICATE_SEED_SECRET='${certificateSeed.secretArn}' AWS_REGION='${Aws.REGION}' NODE_CONFIG_FILE='${NODE_CONFIG_FILE}'`,
    `mkdir -p ${NODE_DIRECTORY}`,
    ...NODE_FILES.map((name) => `cat > ${NODE_DIRECTORY}/${name} <<'NODE_FILE_END'\n${readFileSync(join(PROJECT_ROOT, 'test', 'integ', 'node', name), 'utf8')}NODE_FILE_END`),
    `bash ${NODE_DIRECTORY}/setup-node.sh`,
  );
  return userData;
}

/** The deployed half: the fleet (network, two nodes) and the construct under test. */
class IntegFleetStack extends Stack {
  readonly rotation: TicketKeyRotation;

  constructor(scope: Construct, id: string, props?: StackProps) {
    super(scope, id, props);
    // One public subnet and no NAT gateway: the nodes reach AWS through their public addresses,
    // the verifier (which has none) through interface endpoints for the three services it calls.
    const vpc = new ec2.Vpc(this, 'Vpc', { maxAzs: 1, natGateways: 0, subnetConfiguration: [{ name: 'Public', subnetType: ec2.SubnetType.PUBLIC }] });
    for (const [name, service] of [
      ['Ec2', ec2.InterfaceVpcEndpointAwsService.EC2],
      ['Ssm', ec2.InterfaceVpcEndpointAwsService.SSM],
      ['SecretsManager', ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER],
    ] as const) {
      vpc.addInterfaceEndpoint(`${name}Endpoint`, { service });
    }
    const [subnet] = vpc.publicSubnets;
    if (subnet === undefined) throw new Error('the integration VPC has no public subnet');

    this.rotation = new TicketKeyRotation(this, 'TicketKeys', {
      targetTagKey: FLEET_TAG.key,
      targetTagValue: FLEET_TAG.value,
      verifierVpcId: vpc.vpcId,
      verifierSubnetIds: [subnet.subnetId],
      // Secrets Manager's own schedule must not start a rotation during a run (a window opens at
      // 00:00 and 12:00 UTC at the default 12 hours): the test's rotations are the only ones.
      rotationInterval: Duration.days(30),
      logRetention: logs.RetentionDays.ONE_WEEK,
    });

    const certificateSeed = new secretsmanager.Secret(this, 'CertificateSeed', {
      description: 'Seed of the integration fleet\'s one TLS certificate (test/integ/node/shared-certificate.sh)',
      generateSecretString: { passwordLength: 64, excludePunctuation: true },
    });
    const role = new iam.Role(this, 'NodeRole', {
      assumedBy: new iam.ServicePrincipal('ec2.amazonaws.com'),
      managedPolicies: [iam.ManagedPolicy.fromAwsManagedPolicyName('AmazonSSMManagedInstanceCore'), this.rotation.nodePolicy],
    });
    // The README's way: the role carries the fleet tag, so the key set's policies let it read.
    Tags.of(role).add(FLEET_TAG.key, FLEET_TAG.value);
    // Only the read setup-node.sh makes (grantRead would add DescribeSecret).
    role.addToPolicy(new iam.PolicyStatement({ actions: ['secretsmanager:GetSecretValue'], resources: [certificateSeed.secretArn] }));

    const nodes = new ec2.SecurityGroup(this, 'NodeSecurityGroup', { vpc, description: 'Integration fleet nodes: TLS from the verifier only' });
    if (this.rotation.verifierSecurityGroup === undefined) throw new Error('the verifier runs in the VPC, so it has a security group');
    nodes.addIngressRule(this.rotation.verifierSecurityGroup, ec2.Port.tcp(443), 'TLS handshakes from the verifier');
    for (let index = 1; index <= NODE_COUNT; index++) {
      const userData = nodeUserData(certificateSeed);
      const instance = new ec2.Instance(this, `Node${index}`, {
        vpc,
        vpcSubnets: { subnets: [subnet] },
        instanceType: ec2.InstanceType.of(ec2.InstanceClass.T4G, ec2.InstanceSize.NANO),
        machineImage: ec2.MachineImage.latestAmazonLinux2023({ cpuType: ec2.AmazonLinuxCpuType.ARM_64 }),
        role,
        securityGroup: nodes,
        userData,
        requireImdsv2: true,
        // Created only when its user data succeeded: nginx runs, with the fleet's certificate.
        resourceSignalTimeout: Duration.minutes(15),
      });
      userData.addSignalOnExitCommand(instance);
      // dnf needs the subnet's route to the internet gateway.
      instance.node.addDependency(subnet.internetConnectivityEstablished);
      Tags.of(instance).add(FLEET_TAG.key, FLEET_TAG.value);
    }
    // A test leaves nothing behind: the keys, secrets and log groups the construct keeps by default go too.
    RemovalPolicies.of(this).destroy();
    // A KMS key is deleted only after a waiting period: the shortest, rather than the default 30 days.
    for (const key of this.node.findAll().filter((child): child is kms.CfnKey => child instanceof kms.CfnKey)) key.pendingWindowInDays = 7;
  }
}

/** What assertions poll: every 30 s, for at most `minutes`. */
function waitUpTo(call: IApiCall, minutes: number): IApiCall {
  return call.waitForAssertions({ totalTimeout: Duration.minutes(minutes), interval: Duration.seconds(30), backoffRate: 1 });
}

/** The steps of one rotation to generation `generation`, each as the rotation function logged it. */
function rotationLogged(assertions: IDeployAssert, rotation: TicketKeyRotation, generation: number): IApiCall[] {
  const logged = (filterPattern: string, message: string): IApiCall =>
    waitUpTo(
      assertions
        .awsApiCall('CloudWatchLogs', 'filterLogEvents', { logGroupName: rotation.rotationLogs.logGroupName, filterPattern })
        .expect(ExpectedResult.objectLike({ events: Match.arrayWith([Match.objectLike({ message: Match.stringLikeRegexp(message) })]) })),
      5,
    );
  const everyNodeAtGeneration = Array.from({ length: NODE_COUNT }, (_, index) => `$.nodes[${index}].generation = ${generation} && $.nodes[${index}].ok IS TRUE`).join(' && ');
  return [
    logged(`{ $.step = "createSecret" && $.outcome = "succeeded" && $.kind = "rotation" && $.generation = ${generation} }`, '"step":"createSecret"'),
    logged(`{ $.step = "setSecret" && $.outcome = "succeeded" && $.nodesUpdated = ${NODE_COUNT} && $.nodesFailed = 0 && ${everyNodeAtGeneration} }`, '"step":"setSecret"'),
    logged(
      `{ $.step = "testSecret" && $.outcome = "succeeded" && $.nodesOnExpectedKey = ${NODE_COUNT} && ${everyNodeAtGeneration} }`,
      // Every ticket captured before the rotation resumed after it (the same count twice).
      generation > 1 ? '"continuityTried":([1-9][0-9]*),"continuityResumed":\\1[,}]' : '"step":"testSecret"',
    ),
  ];
}

const app = new App();
const fleet = new IntegFleetStack(app, 'TicketKeyRotationInteg');
const integ = new IntegTest(app, 'TicketKeyRotationIntegTest', {
  testCases: [fleet],
  // The snapshot's assets are not committed, so it cannot be deployed first: each run deploys afresh.
  stackUpdateWorkflow: false,
  // Asset hashes change with every edit of the bundled code; the templates are what is compared.
  diffAssets: false,
});
const { assertions } = integ;
const { rotation } = fleet;
const fleetTarget = { Key: `tag:${FLEET_TAG.key}`, Values: [FLEET_TAG.value] };

// Both nodes are SSM managed nodes, online.
const online = waitUpTo(
  assertions
    .awsApiCall('SSM', 'describeInstanceInformation', { Filters: [fleetTarget, { Key: 'PingStatus', Values: ['Online'] }] })
    .expect(ExpectedResult.objectLike({ InstanceInformationList: Array.from({ length: NODE_COUNT }, () => Match.objectLike({ PingStatus: 'Online' })) })),
  10,
);
// Onboarded once, by the stack's own document, as the README tells an operator to.
const onboarding = assertions.awsApiCall('SSM', 'sendCommand', {
  DocumentName: rotation.onboardingDocument.ref,
  Targets: [fleetTarget],
  Parameters: { ConfigFile: [NODE_CONFIG_FILE] },
  CloudWatchOutputConfig: { CloudWatchOutputEnabled: true, CloudWatchLogGroupName: rotation.commandOutput.logGroupName },
});
const onboarded = waitUpTo(
  assertions
    .awsApiCall('SSM', 'listCommands', { CommandId: onboarding.getAttString('Command.CommandId') })
    .expect(ExpectedResult.objectLike({ Commands: [Match.objectLike({ Status: 'Success', TargetCount: NODE_COUNT, CompletedCount: NODE_COUNT, ErrorCount: 0 })] })),
  5,
);
// The deploy rotated nothing: no key names are published yet.
const noKeysYet = assertions
  .awsApiCall('SSM', 'getParameter', { Name: rotation.keyNames.parameterName })
  .expect(ExpectedResult.objectLike({ Parameter: Match.objectLike({ Value: '{}' }) }));

/** RotateSecret, then AWSCURRENT at `generation` (published once finishSecret moved it), then the verifier's proof and the audit log. */
function rotateTo(generation: number): IApiCall[] {
  const start = assertions.awsApiCall('SecretsManager', 'rotateSecret', { SecretId: rotation.secret.secretArn });
  // RotateSecret's caller "also need[s] lambda:InvokeFunction permissions on the rotation function":
  // https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_RotateSecret.html
  start.provider.addToRolePolicy({ Effect: 'Allow', Action: ['lambda:InvokeFunction'], Resource: [rotation.rotationFunction.functionArn] });
  const current = waitUpTo(
    assertions
      .awsApiCall('SSM', 'getParameter', { Name: rotation.keyNames.parameterName })
      .expect(ExpectedResult.objectLike({ Parameter: Match.objectLike({ Value: Match.serializedJson({ current: Match.objectLike({ generation }) }) }) })),
    20,
  );
  const verified = assertions
    .invokeFunction({ functionName: rotation.verifierFunction.functionName, payload: JSON.stringify({ action: 'canary' }) })
    .expect(
      ExpectedResult.objectLike({
        Payload: Match.serializedJson(
          Match.objectLike({
            action: 'canary',
            ok: true,
            expectedKeyInferred: false,
            failures: [],
            nodes: Array.from({ length: NODE_COUNT }, () => Match.objectLike({ reachable: true, onExpectedKey: true })),
          }),
        ),
      }),
    );
  return [start, current, verified, ...rotationLogged(assertions, rotation, generation)];
}

const finishedTwice = waitUpTo(
  assertions
    .awsApiCall('CloudWatchLogs', 'filterLogEvents', {
      logGroupName: rotation.rotationLogs.logGroupName,
      filterPattern: '{ $.step = "finishSecret" && $.outcome = "succeeded" && $.kind = "rotation" }',
    })
    .expect(ExpectedResult.objectLike({ events: [Match.objectLike({ message: Match.stringLikeRegexp('"step":"finishSecret"') }), Match.objectLike({ message: Match.stringLikeRegexp('"step":"finishSecret"') })] })),
  5,
);

const sequence = [online, onboarding, onboarded, noKeysYet, ...rotateTo(1), ...rotateTo(2), finishedTwice];
sequence.reduce((before, call) => before.next(call));

app.synth();
