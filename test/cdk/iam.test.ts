import { join } from 'node:path';
import { App, Duration } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { REVOCATION_TAG } from '../../src/core/secret-store.js';
import { TicketKeyRotationStack } from '../../lib/ticket-key-rotation-stack.js';
import type { TicketKeyRotationProps } from '../../lib/ticket-key-rotation.js';
import { cliCallsOf, embeddedFiles, PROJECT, sdkCallsOf } from '../support/aws-calls.js';
import { Account, allowed, decisions, session, VIA_SECRETS_MANAGER, type Call, type Policy } from '../support/iam-evaluator.js';
import { ACCOUNT, REGION, ResolvedTemplate } from '../support/template-resolver.js';

/**
 * IAM proven by a policy evaluator (@cloud-copilot/iam-simulate) over the synthesized template:
 * every call each principal makes is allowed, and the calls that must stay denied are denied.
 * The calls come from the code, so a new call without its permission fails here.
 */

const FLEET = { targetTagKey: 'TicketKeyFleet', targetTagValue: 'edge' };
const OTHER_ACCOUNT = '210987654321';

function synthesize(props: Partial<TicketKeyRotationProps> = {}): ResolvedTemplate {
  const app = new App();
  const stack = new TicketKeyRotationStack(app, 'TicketKeyRotation', { rotation: { ...FLEET, ...props } });
  return new ResolvedTemplate(Template.fromStack(stack).toJSON() as never);
}

describe('IAM, evaluated over the synthesized template', () => {
  const account = new Account(synthesize());
  const secret = account.arn('AWS::SecretsManager::Secret', 'TicketKeysKeySet');
  const ticketStore = account.arn('AWS::SecretsManager::Secret', 'TicketKeysTicketStore');
  const key = account.arn('AWS::KMS::Key', 'TicketKeysKey', 'Arn');
  const ticketStoreKey = account.arn('AWS::KMS::Key', 'TicketKeysTicketStoreKey', 'Arn');
  const keyNamesParameter = `arn:aws:ssm:${REGION}:${ACCOUNT}:parameter/${account.arn('AWS::SSM::Parameter', 'TicketKeysKeyNames')}`;
  const rotationFunction = account.arn('AWS::Lambda::Function', 'TicketKeysRotationFunction', 'Arn');
  const verifierFunction = account.arn('AWS::Lambda::Function', 'TicketKeysVerifierFunction', 'Arn');
  const document = `arn:aws:ssm:${REGION}:${ACCOUNT}:document/${account.arn('AWS::SSM::Document', 'TicketKeysNodeApplier')}`;
  const taggedInstance = `arn:aws:ec2:${REGION}:${ACCOUNT}:instance/i-0123456789abcdef0`;
  const logStream = (prefix: string) => `arn:aws:logs:${REGION}:${ACCOUNT}:log-group:${account.arn('AWS::Logs::LogGroup', prefix)}:log-stream:2026/11/25/[$LATEST]abc`;
  const commandOutputGroup = account.arn('AWS::Logs::LogGroup', 'TicketKeysCommandOutput');
  const roleName = (prefix: string) => account.arn('AWS::IAM::Role', prefix);

  /** Each principal's calls: what its code sends, with the resource and the context AWS evaluates. */
  const rotationCalls: Record<string, Call[]> = {
    'secretsmanager:DescribeSecret': [{ action: 'secretsmanager:DescribeSecret', resource: secret }],
    'secretsmanager:GetSecretValue': [
      { action: 'secretsmanager:GetSecretValue', resource: secret },
      { action: 'kms:Decrypt', resource: key, context: VIA_SECRETS_MANAGER },
    ],
    'secretsmanager:PutSecretValue': [
      { action: 'secretsmanager:PutSecretValue', resource: secret },
      { action: 'kms:GenerateDataKey', resource: key, context: VIA_SECRETS_MANAGER },
    ],
    'secretsmanager:UpdateSecretVersionStage': [{ action: 'secretsmanager:UpdateSecretVersionStage', resource: secret }],
    'secretsmanager:ListSecretVersionIds': [{ action: 'secretsmanager:ListSecretVersionIds', resource: secret }],
    'secretsmanager:UntagResource': [{ action: 'secretsmanager:UntagResource', resource: secret, context: { 'aws:TagKeys': [REVOCATION_TAG] } }],
    'ssm:SendCommand': [
      { action: 'ssm:SendCommand', resource: document },
      { action: 'ssm:SendCommand', resource: taggedInstance, context: { [`ssm:resourceTag/${FLEET.targetTagKey}`]: FLEET.targetTagValue } },
    ],
    'ssm:ListCommands': [{ action: 'ssm:ListCommands', resource: '*' }],
    'ssm:ListCommandInvocations': [{ action: 'ssm:ListCommandInvocations', resource: '*' }],
    'ssm:GetCommandInvocation': [{ action: 'ssm:GetCommandInvocation', resource: '*' }],
    'ssm:DescribeInstanceInformation': [{ action: 'ssm:DescribeInstanceInformation', resource: '*' }],
    // CancelCommand is authorized on the command's document and instances, like SendCommand.
    'ssm:CancelCommand': [{ action: 'ssm:CancelCommand', resource: '*' }],
    'lambda:InvokeFunction': [{ action: 'lambda:InvokeFunction', resource: verifierFunction }],
    'ssm:PutParameter': [{ action: 'ssm:PutParameter', resource: keyNamesParameter }],
  };
  const verifierCalls: Record<string, Call[]> = {
    'ec2:DescribeInstances': [{ action: 'ec2:DescribeInstances', resource: '*' }],
    // Its own ticket store, with a key of its own; the key names, never the key set.
    'secretsmanager:GetSecretValue': [
      { action: 'secretsmanager:GetSecretValue', resource: ticketStore, context: { 'secretsmanager:VersionStage': 'AWSCURRENT' } },
      { action: 'kms:Decrypt', resource: ticketStoreKey, context: VIA_SECRETS_MANAGER },
    ],
    'secretsmanager:PutSecretValue': [
      { action: 'secretsmanager:PutSecretValue', resource: ticketStore },
      { action: 'kms:GenerateDataKey', resource: ticketStoreKey, context: VIA_SECRETS_MANAGER },
    ],
    // Each value replaces the one before, which keeps no stage.
    'secretsmanager:DescribeSecret': [{ action: 'secretsmanager:DescribeSecret', resource: ticketStore }],
    'secretsmanager:UpdateSecretVersionStage': [{ action: 'secretsmanager:UpdateSecretVersionStage', resource: ticketStore }],
    'ssm:GetParameter': [{ action: 'ssm:GetParameter', resource: keyNamesParameter }],
  };
  /** What Lambda does with a function's role before the code runs: its log lines. */
  const lambdaLogging = (prefix: string): Call[] => [
    { action: 'logs:CreateLogStream', resource: logStream(prefix) },
    { action: 'logs:PutLogEvents', resource: logStream(prefix) },
  ];

  it('knows every AWS call the rotation function and the verifier make (the lists come from their code)', () => {
    expect(sdkCallsOf(join(PROJECT, 'lambda', 'rotation.ts'))).toEqual(Object.keys(rotationCalls).sort());
    expect(sdkCallsOf(join(PROJECT, 'lambda', 'verifier.ts'))).toEqual(Object.keys(verifierCalls).sort());
  });

  /** Every action a role's policies allow, whatever the resource. */
  const grantedActions = (policies: { policy: Policy }[]): string[] =>
    [...new Set(policies.flatMap(({ policy }) => policy.Statement.filter((statement) => statement.Effect === 'Allow').flatMap((statement) => [statement.Action as string | string[]].flat())))].sort();
  const actionsOf = (calls: Call[]): string[] => [...new Set(calls.map((call) => call.action))].sort();

  it('grants each function nothing beyond the calls it makes (and, for rotation, what CDK\'s rotation schedule adds)', () => {
    const rotation = account.identityPolicies(roleName('TicketKeysRotationRole'));
    // CDK's rotation schedule grants GetRandomPassword, which this function never calls; the KMS
    // use through Secrets Manager is granted in the key's policy, not here.
    const ownCalls = [...Object.values(rotationCalls).flat(), ...lambdaLogging('TicketKeysRotationLogs')].filter((call) => !call.action.startsWith('kms:'));
    expect(grantedActions(rotation)).toEqual([...actionsOf(ownCalls), 'secretsmanager:GetRandomPassword'].sort());
    const verifier = account.identityPolicies(roleName('TicketKeysVerifierRole'));
    expect(grantedActions(verifier)).toEqual(actionsOf([...Object.values(verifierCalls).flat(), ...lambdaLogging('TicketKeysVerifierLogs')]));
  });

  it('denies the verifier the key set and its key: it checks the wire against the published names', async () => {
    const role = roleName('TicketKeysVerifierRole');
    const calls: Call[] = [
      { action: 'secretsmanager:GetSecretValue', resource: secret, context: { 'secretsmanager:VersionStage': 'AWSCURRENT' } },
      { action: 'kms:Decrypt', resource: key, context: { ...VIA_SECRETS_MANAGER, 'kms:EncryptionContext:SecretARN': secret } },
      { action: 'ssm:PutParameter', resource: keyNamesParameter },
    ];
    expect(await decisions(account, session(role), account.identityPolicies(role), calls)).toEqual([
      `secretsmanager:GetSecretValue ${secret}: ExplicitlyDenied`,
      `kms:Decrypt ${key}: ExplicitlyDenied`,
      `ssm:PutParameter ${keyNamesParameter}: ImplicitlyDenied`,
    ]);
  });

  it('allows the rotation function every call it makes', async () => {
    const role = roleName('TicketKeysRotationRole');
    const calls = [...Object.values(rotationCalls).flat(), ...lambdaLogging('TicketKeysRotationLogs')];
    expect(await decisions(account, session(role), account.identityPolicies(role), calls)).toEqual(allowed(calls));
  });

  it('allows the verifier every call it makes', async () => {
    const role = roleName('TicketKeysVerifierRole');
    const calls = [...Object.values(verifierCalls).flat(), ...lambdaLogging('TicketKeysVerifierLogs')];
    expect(await decisions(account, session(role), account.identityPolicies(role), calls)).toEqual(allowed(calls));
  });

  it('denies the rotation function SendCommand to an untagged instance or another document, removing any tag but the revocation one, other secrets, and its key outside Secrets Manager', async () => {
    const role = roleName('TicketKeysRotationRole');
    const policies = account.identityPolicies(role);
    const calls: Call[] = [
      { action: 'ssm:SendCommand', resource: taggedInstance, context: { [`ssm:resourceTag/${FLEET.targetTagKey}`]: 'staging' } },
      { action: 'ssm:SendCommand', resource: `arn:aws:ssm:${REGION}:${ACCOUNT}:document/AWS-RunShellScript` },
      { action: 'secretsmanager:UntagResource', resource: secret, context: { 'aws:TagKeys': ['Owner'] } },
      { action: 'secretsmanager:UntagResource', resource: secret, context: { 'aws:TagKeys': [REVOCATION_TAG, 'Owner'] } },
      { action: 'secretsmanager:TagResource', resource: secret },
      { action: 'secretsmanager:UpdateSecret', resource: secret },
      { action: 'secretsmanager:DeleteSecret', resource: secret },
      { action: 'secretsmanager:GetSecretValue', resource: ticketStore },
      { action: 'secretsmanager:GetSecretValue', resource: `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:database-password-XyZ123` },
      { action: 'kms:Decrypt', resource: key },
      { action: 'lambda:InvokeFunction', resource: rotationFunction },
    ];
    // The secret's own policy denies deleting it to everyone, and the ticket store's denies reading it to all but the verifier.
    const explicitly = (call: Call) => call.action === 'secretsmanager:DeleteSecret' || call.resource === ticketStore;
    expect(await decisions(account, session(role), policies, calls)).toEqual(calls.map((call) => `${call.action} ${call.resource}: ${explicitly(call) ? 'Explicitly' : 'Implicitly'}Denied`));
  });

  const nodeSession = `arn:aws:sts::${ACCOUNT}:assumed-role/FleetNodeRole/i-0123456789abcdef0`;
  const fleetTag = { [FLEET.targetTagKey]: FLEET.targetTagValue };
  const nodePolicies = (on: Account) => on.identityPolicies('FleetNodeRole', [on.arn('AWS::IAM::ManagedPolicy', 'TicketKeysNodePolicy')]);
  /** What Secrets Manager asks KMS for a caller's GetSecretValue: https://docs.aws.amazon.com/secretsmanager/latest/userguide/security-encryption.html */
  const decryptFor = (secretArn: string, versionId = '4c1f9b6e-2a0d-4f5e-9a52-0c8d4e6f7a81'): Call => ({
    action: 'kms:Decrypt',
    resource: key,
    context: { ...VIA_SECRETS_MANAGER, 'kms:EncryptionContext:SecretARN': secretArn, 'kms:EncryptionContext:SecretVersionId': versionId },
  });
  const readStage = (stage?: string): Call => ({ action: 'secretsmanager:GetSecretValue', resource: secret, ...(stage ? { context: { 'secretsmanager:VersionStage': stage } } : {}) });

  it('allows a node whose role carries the fleet tag, with the managed policy on it, the calls of the node document and of the SSM agent sending its output', async () => {
    const policies = nodePolicies(account);
    const script = ((account.template.one('AWS::SSM::Document', 'TicketKeysNodeApplier').properties.Content as { mainSteps: { inputs: { runCommand: string[] } }[] }).mainSteps[0]!.inputs.runCommand).join('\n');
    // The document's own lines and every file it carries (the applier's scripts and program, unpacked).
    const everything = (command: string): string => {
      const files = embeddedFiles(command);
      expect(Object.keys(files)).toEqual(expect.arrayContaining(['apply-ticket-keys.sh', 'ticket_keys/apply.py']));
      return [command, ...Object.values(files)].join('\n');
    };
    expect(cliCallsOf(everything(script))).toEqual(['secretsmanager:GetSecretValue']);
    // Every read names its stage: the node's role may read no other way.
    expect(script.match(/^.*fetch --.*$/gm)?.every((line) => line.includes('--version-stage AWS'))).toBe(true);
    const onboarding = ((account.template.one('AWS::SSM::Document', 'TicketKeysNodeOnboarding').properties.Content as { mainSteps: { inputs: { runCommand: string[] } }[] }).mainSteps[0]!.inputs.runCommand).join('\n');
    // The boot-time fetch it installs reads AWSCURRENT with the same role.
    expect(cliCallsOf(everything(onboarding))).toEqual(['secretsmanager:GetSecretValue']);
    expect(cliCallsOf('subprocess.run(["aws", "ssm", "send-command"])')).toEqual(['ssm:SendCommand']);
    expect(onboarding.replace(/['\\]/g, '')).toContain('--version-stage AWSCURRENT');
    const outputGroup = `arn:aws:logs:${REGION}:${ACCOUNT}:log-group:${commandOutputGroup}`;
    const outputStream = `${outputGroup}:log-stream:a1b2c3d4-command-id/i-0123456789abcdef0/applyTicketKeys/stdout`;
    const calls: Call[] = [
      readStage('AWSCURRENT'),
      readStage('AWSPENDING'),
      decryptFor(secret),
      // The agent creates the output group itself before it streams (and gives up on any error
      // but "already exists"), with the calls of the policy that AWS documents for it:
      // https://docs.aws.amazon.com/systems-manager/latest/userguide/sysman-rc-setting-up-cwlogs.html
      { action: 'logs:DescribeLogGroups', resource: '*' },
      { action: 'logs:CreateLogGroup', resource: outputGroup },
      { action: 'logs:DescribeLogStreams', resource: outputGroup },
      { action: 'logs:CreateLogStream', resource: outputStream },
      { action: 'logs:PutLogEvents', resource: outputStream },
    ];
    expect(await decisions(account, nodeSession, policies, calls, fleetTag)).toEqual(allowed(calls));
    const denied: Call[] = [
      // AWSPREVIOUS, an old version by its id alone, or no stage named: none of them.
      readStage('AWSPREVIOUS'),
      readStage(),
      { action: 'secretsmanager:GetSecretValue', resource: secret, context: { 'secretsmanager:VersionId': '4c1f9b6e-2a0d-4f5e-9a52-0c8d4e6f7a81' } },
      { action: 'secretsmanager:GetSecretValue', resource: `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:database-password-XyZ123` },
      { action: 'secretsmanager:GetSecretValue', resource: ticketStore },
      { action: 'secretsmanager:PutSecretValue', resource: secret },
      { action: 'kms:Decrypt', resource: key },
      { action: 'logs:PutLogEvents', resource: `arn:aws:logs:${REGION}:${ACCOUNT}:log-group:other:log-stream:x` },
    ];
    expect(await decisions(account, nodeSession, policies, denied, fleetTag)).toEqual(denied.map((call) => `${call.action} ${call.resource}: ${call.resource === ticketStore ? 'Explicitly' : 'Implicitly'}Denied`));
  });

  it('denies the key set to every other principal of the account, an administrator with `*` on `*` and a node role without the fleet tag included, in the secret\'s policy and in the key\'s', async () => {
    const administrator = [{ name: 'AdministratorAccess', policy: { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: '*', Resource: '*' }] } }];
    const calls: Call[] = [readStage('AWSCURRENT'), decryptFor(secret), decryptFor(ticketStore)];
    const explicitly = calls.map((call) => `${call.action} ${call.resource}: ExplicitlyDenied`);
    expect(await decisions(account, session('PlatformAdmin'), administrator, calls)).toEqual(explicitly);
    expect(await decisions(account, nodeSession, nodePolicies(account), calls.slice(0, 2))).toEqual(explicitly.slice(0, 2));
    expect(await decisions(account, nodeSession, nodePolicies(account), calls.slice(0, 2), { [FLEET.targetTagKey]: 'staging' })).toEqual(explicitly.slice(0, 2));
    // Creating a secret stays open to CloudFormation's role: encrypting, and Secrets Manager's check
    // of the key, which decrypts no secret ("SecretVersionId": "RequestToValidateKeyAccess").
    const encrypt: Call[] = [{ action: 'kms:GenerateDataKey', resource: key, context: VIA_SECRETS_MANAGER }];
    expect(await decisions(account, session('cdk-hnb659fds-cfn-exec-role'), administrator, encrypt)).toEqual(allowed(encrypt));
    // The evaluator (iam-simulate 0.1.173) cannot read kms:EncryptionContext:<key> from a request:
    // its key normalizer splits variable keys on "/" only, so the check's exemption is pinned here
    // as written rather than evaluated.
    const keyPolicy = account.template.one('AWS::KMS::Key', 'TicketKeysKey').properties.KeyPolicy as Policy;
    const deny = keyPolicy.Statement.find((statement) => statement.Sid === 'OnlyItsReadersDecrypt') as { Condition: Record<string, Record<string, unknown>> };
    expect(deny.Condition.StringNotEquals).toMatchObject({ 'kms:EncryptionContext:SecretVersionId': 'RequestToValidateKeyAccess' });
  });

  it('keeps the captured sessions to the verifier, and to their current value: a replaced one is read by nobody', async () => {
    const role = roleName('TicketKeysVerifierRole');
    const administrator = [{ name: 'AdministratorAccess', policy: { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: '*', Resource: '*' }] } }];
    const read = (context?: Record<string, string>): Call => ({ action: 'secretsmanager:GetSecretValue', resource: ticketStore, ...(context ? { context } : {}) });
    const replaced = [read({ 'secretsmanager:VersionStage': 'AWSPREVIOUS' }), read({ 'secretsmanager:VersionId': '0b7c2b1e-6b1a-4d52-9a43-1c2d3e4f5a6b' }), read()];
    expect(await decisions(account, session(role), account.identityPolicies(role), replaced)).toEqual(replaced.map((call) => `${call.action} ${call.resource}: ExplicitlyDenied`));
    const others = [read({ 'secretsmanager:VersionStage': 'AWSCURRENT' }), { action: 'kms:Decrypt', resource: ticketStoreKey, context: VIA_SECRETS_MANAGER }];
    expect(await decisions(account, session('PlatformAdmin'), administrator, others)).toEqual(others.map((call) => `${call.action} ${call.resource}: ExplicitlyDenied`));
    expect(await decisions(account, session(roleName('TicketKeysRotationRole')), administrator, others)).toEqual(others.map((call) => `${call.action} ${call.resource}: ExplicitlyDenied`));
  });

  it('with nodeRoleArns, lets exactly those roles read, tagged or not', async () => {
    const listed = new Account(synthesize({ nodeRoleArns: [`arn:aws:iam::${ACCOUNT}:role/FleetNodeRole`] }));
    const listedSecret = listed.arn('AWS::SecretsManager::Secret', 'TicketKeysKeySet');
    const calls: Call[] = [{ action: 'secretsmanager:GetSecretValue', resource: listedSecret, context: { 'secretsmanager:VersionStage': 'AWSCURRENT' } }];
    expect(await decisions(listed, nodeSession, nodePolicies(listed), calls)).toEqual(allowed(calls));
    const otherNode = `arn:aws:sts::${ACCOUNT}:assumed-role/OtherRole/i-0fedcba9876543210`;
    const otherPolicies = listed.identityPolicies('OtherRole', [listed.arn('AWS::IAM::ManagedPolicy', 'TicketKeysNodePolicy')]);
    expect(await decisions(listed, otherNode, otherPolicies, calls, fleetTag)).toEqual([`secretsmanager:GetSecretValue ${listedSecret}: ExplicitlyDenied`]);
  });

  it('lets Secrets Manager invoke the rotation function for this account only', async () => {
    const fromThisAccount = { 'aws:SourceAccount': ACCOUNT, 'aws:SourceArn': secret };
    const fromAnother = { 'aws:SourceAccount': OTHER_ACCOUNT, 'aws:SourceArn': `arn:aws:secretsmanager:${REGION}:${OTHER_ACCOUNT}:secret:theirs-AbCdEf` };
    const invoke = (context: Record<string, string>): Call => ({ action: 'lambda:InvokeFunction', resource: rotationFunction, context });
    expect(await decisions(account, 'secretsmanager.amazonaws.com', [], [invoke(fromThisAccount), invoke(fromAnother)])).toEqual([
      `lambda:InvokeFunction ${rotationFunction}: Allowed`,
      `lambda:InvokeFunction ${rotationFunction}: ImplicitlyDenied`,
    ]);
  });

  it('lets the canary schedule invoke the verifier', async () => {
    const role = roleName('TicketKeysCanaryScheduleRole');
    const calls: Call[] = [{ action: 'lambda:InvokeFunction', resource: verifierFunction }];
    expect(await decisions(account, session(role), account.identityPolicies(role), calls)).toEqual(allowed(calls));
  });

  it('lets CloudWatch alarms of this account publish to the encrypted alarm topic, over TLS only', async () => {
    const topic = account.arn('AWS::SNS::Topic', 'TicketKeysAlarmTopic');
    const topicKey = account.arn('AWS::KMS::Key', 'TicketKeysAlarmTopicKey', 'Arn');
    const alarms = account.template.ofType('AWS::CloudWatch::Alarm').map(([id]) => account.template.getAtt(id, 'Arn'));
    expect(alarms).toHaveLength(5);
    for (const alarm of alarms) {
      const fromAlarm = { 'aws:SourceAccount': ACCOUNT, 'aws:SourceArn': alarm };
      // An encrypted topic needs CloudWatch to use its key too:
      // https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html#compatibility-with-aws-services
      const calls: Call[] = [
        { action: 'sns:Publish', resource: topic, context: fromAlarm },
        { action: 'kms:GenerateDataKey', resource: topicKey, context: fromAlarm },
        { action: 'kms:Decrypt', resource: topicKey, context: fromAlarm },
      ];
      expect(await decisions(account, 'cloudwatch.amazonaws.com', [], calls)).toEqual(allowed(calls));
    }
    const otherAlarm = `arn:aws:cloudwatch:${REGION}:${OTHER_ACCOUNT}:alarm:theirs`;
    expect(
      await decisions(account, 'cloudwatch.amazonaws.com', [], [
        { action: 'sns:Publish', resource: topic, context: { 'aws:SourceAccount': ACCOUNT, 'aws:SourceArn': alarms[0]!, 'aws:SecureTransport': 'false' } },
        { action: 'sns:Publish', resource: topic, context: { 'aws:SourceAccount': OTHER_ACCOUNT, 'aws:SourceArn': otherAlarm } },
      ]),
    ).toEqual([`sns:Publish ${topic}: ExplicitlyDenied`, `sns:Publish ${topic}: ImplicitlyDenied`]);
  });

  it('lets the Scheduler start rotations more often than every 4 hours: RotateSecret, and invoking the rotation function', async () => {
    const frequent = new Account(synthesize({ rotationInterval: Duration.minutes(90), ticketLifetime: Duration.hours(3) }));
    const schedule = frequent.template.one('AWS::Scheduler::Schedule', 'TicketKeysFrequentRotation').properties as { Target: { RoleArn: string } };
    const role = schedule.Target.RoleArn.split('/').at(-1)!;
    const calls: Call[] = [
      { action: 'secretsmanager:RotateSecret', resource: frequent.arn('AWS::SecretsManager::Secret', 'TicketKeysKeySet') },
      // "You also need lambda:InvokeFunction permissions on the rotation function."
      // https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_RotateSecret.html
      { action: 'lambda:InvokeFunction', resource: frequent.arn('AWS::Lambda::Function', 'TicketKeysRotationFunction', 'Arn') },
    ];
    expect(await decisions(frequent, session(role), frequent.identityPolicies(role), calls)).toEqual(allowed(calls));
    const otherSecret = `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:database-password-XyZ123`;
    expect(await decisions(frequent, session(role), frequent.identityPolicies(role), [{ action: 'secretsmanager:RotateSecret', resource: otherSecret }])).toEqual([
      `secretsmanager:RotateSecret ${otherSecret}: ImplicitlyDenied`,
    ]);
  });

  it('lets the verifier in the nodes\' VPC manage its network interfaces, as Lambda does with its role', async () => {
    const inVpc = new Account(synthesize({ verifierVpcId: 'vpc-0123456789abcdef0', verifierSubnetIds: ['subnet-0123456789abcdef0'] }));
    const role = inVpc.arn('AWS::IAM::Role', 'TicketKeysVerifierRole');
    // https://docs.aws.amazon.com/lambda/latest/dg/configuration-vpc.html#configuration-vpc-permissions
    const calls: Call[] = ['ec2:CreateNetworkInterface', 'ec2:DescribeNetworkInterfaces', 'ec2:DeleteNetworkInterface', 'ec2:AssignPrivateIpAddresses', 'ec2:UnassignPrivateIpAddresses'].map(
      (action) => ({ action, resource: '*' }),
    );
    expect(await decisions(inVpc, session(role), inVpc.identityPolicies(role), calls)).toEqual(allowed(calls));
  });
});
