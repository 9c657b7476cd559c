// The operator's commands against a deployed stack (ticket-keys status, rotate, revoke, verify
// --stack), with the AWS clients mocked as AWS documents them.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CloudFormationClient, DescribeStacksCommand } from '@aws-sdk/client-cloudformation';
import { CloudWatchLogsClient, FilterLogEventsCommand } from '@aws-sdk/client-cloudwatch-logs';
import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { DescribeSecretCommand, GetSecretValueCommand, RotateSecretCommand, SecretsManagerClient, TagResourceCommand } from '@aws-sdk/client-secrets-manager';
import { GetParameterCommand, SendCommandCommand, SSMClient } from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { OperatorError, StackOperator, type OperatorClients } from '../../src/aws/stack-operator.js';
import { formatStatus } from '../../src/cli/aws.js';
import { nodeApplierDocument } from '../../lib/node-applier-document.js';
import { PROJECT_ROOT } from '../../src/project-root.js';
import { sdkCallsOf } from '../support/aws-calls.js';
import { FAKE_CLOCK, onFakeClock } from '../support/lambda-context.js';
import { FAKE_NODE_SETTINGS, fakeDocument, mockRunCommand, RunCommandFake, type ManagedNode } from '../support/run-command-fake.js';

const SECRET = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:TicketKeysKeySet-AbCdEf';
const OUTPUTS = {
  SecretArn: SECRET,
  DocumentName: 'TicketKeys-NodeApplier',
  KeyNamesParameter: '/ticket-keys/names',
  VerifierFunctionName: 'TicketKeys-Verifier',
  RotationLogGroup: 'TicketKeys-RotationLogs',
  CommandOutputLogGroup: 'TicketKeys-CommandOutput',
  TargetTag: 'TicketKeyFleet=edge',
};
const CURRENT = { versionId: 'v7', generation: 7, currentKey: 'a'.repeat(32) };
const PENDING = { versionId: 'v8', generation: 8, currentKey: 'b'.repeat(32) };

describe('the operator\'s commands on a deployed stack (AWS mocked as documented)', () => {
  const cloudformation = mockClient(CloudFormationClient);
  const secrets = mockClient(SecretsManagerClient);
  const lambda = mockClient(LambdaClient);
  const logs = mockClient(CloudWatchLogsClient);
  let ssm: ReturnType<typeof mockClient> = mockClient(SSMClient);
  const clients = (): OperatorClients => ({
    cloudformation: new CloudFormationClient({}),
    secrets: new SecretsManagerClient({}),
    ssm: new SSMClient({}),
    lambda: new LambdaClient({}),
    logs: new CloudWatchLogsClient({}),
  });
  const open = () => StackOperator.open(clients(), { stack: 'TicketKeyRotation' });

  beforeEach(() => {
    for (const mock of [cloudformation, secrets, lambda, logs, ssm]) mock.reset();
    cloudformation.on(DescribeStacksCommand, { StackName: 'TicketKeyRotation' }).resolves({
      Stacks: [{ StackName: 'TicketKeyRotation', CreationTime: new Date(0), StackStatus: 'UPDATE_COMPLETE', Outputs: Object.entries(OUTPUTS).map(([OutputKey, OutputValue]) => ({ OutputKey, OutputValue })) }],
    });
    // "If the specified stack doesn't exist, a ValidationError is returned"
    // (https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_DescribeStacks.html).
    cloudformation.on(DescribeStacksCommand, { StackName: 'Nope' }).rejects(Object.assign(new Error('Stack with id Nope does not exist'), { name: 'ValidationError' }));
    // VersionIdsToStages lists "the versions of the secret that have staging labels attached"; a
    // version without one is not in it
    // (https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_DescribeSecret.html).
    secrets.on(DescribeSecretCommand).resolves({
      ARN: SECRET,
      RotationEnabled: true,
      LastRotatedDate: new Date('2026-11-25T18:00:00Z'),
      NextRotationDate: new Date('2026-11-26T06:00:00Z'),
      VersionIdsToStages: { v7: ['AWSCURRENT'], v8: ['AWSPENDING'] },
      Tags: [{ Key: 'RevokeTicketKeys', Value: 'alice: INC-4711' }],
    });
    ssm.on(GetParameterCommand, { Name: '/ticket-keys/names' }).resolves({ Parameter: { Name: '/ticket-keys/names', Value: JSON.stringify({ current: CURRENT, pending: PENDING }) } });
    // FilterLogEvents returns events oldest first, a page at a time, with a nextToken while more match
    // (https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_FilterLogEvents.html).
    const step = (at: string, fields: Record<string, unknown>) => ({ timestamp: Date.parse(at), message: JSON.stringify({ message: 'rotation step', ...fields }) });
    logs
      .on(FilterLogEventsCommand)
      .resolvesOnce({ events: [step('2026-11-25T18:00:01Z', { step: 'finishSecret', outcome: 'succeeded', kind: 'rotation', generation: 7, versionId: 'v7' })], nextToken: 'page-2' })
      .resolvesOnce({ events: [step('2026-11-26T06:00:03Z', { step: 'setSecret', outcome: 'failed', kind: 'rotation', generation: 8, versionId: 'v8', error: 'generation 8 did not reach every node: i-0bbb: nginx -t failed' })] });
  });
  afterEach(() => vi.useRealTimers());

  it('status: versions and key names, the rotation in flight, the last step with its error, the revocation asked for; it reads no key set', async () => {
    const status = await (await open()).status({ nodes: false });
    expect(status).toEqual({
      secretArn: SECRET,
      rotationEnabled: true,
      lastRotated: '2026-11-25T18:00:00.000Z',
      nextRotation: '2026-11-26T06:00:00.000Z',
      stages: { v7: ['AWSCURRENT'], v8: ['AWSPENDING'] },
      keyNames: { current: CURRENT, pending: PENDING },
      inFlight: 'v8',
      revocationRequested: 'alice: INC-4711',
      lastStep: { at: '2026-11-26T06:00:03.000Z', step: 'setSecret', outcome: 'failed', kind: 'rotation', generation: 8, versionId: 'v8', error: 'generation 8 did not reach every node: i-0bbb: nginx -t failed' },
    });
    expect(secrets.commandCalls(GetSecretValueCommand)).toEqual([]);
    expect(logs.commandCalls(FilterLogEventsCommand).map((call) => call.args[0].input.nextToken)).toEqual([undefined, 'page-2']);
    expect(formatStatus(status).split('\n')).toEqual([
      `secret      ${SECRET}`,
      `AWSCURRENT  generation 7, current key ${'a'.repeat(32)} (version v7)`,
      `in flight   version v8, generation 8, current key ${'b'.repeat(32)} (version v8): rolling out, or failed and waiting for its retry`,
      'rotation    on; last rotated 2026-11-25T18:00:00.000Z; next 2026-11-26T06:00:00.000Z',
      'last step   setSecret failed (rotation), generation 8 at 2026-11-26T06:00:03.000Z: generation 8 did not reach every node: i-0bbb: nginx -t failed',
      'revocation  requested ("alice: INC-4711"): the next rotation replaces every key',
    ]);
  });

  it('status: each tagged node\'s generation, through the status document on Run Command', async () => {
    vi.useFakeTimers(FAKE_CLOCK);
    const answer = (summary: Record<string, unknown>): ManagedNode['run'] => () => ({ stdout: `${JSON.stringify(summary)}\n`, stderr: '', exitCode: Number(summary.exitCode) });
    const nodes: ManagedNode[] = [
      { instanceId: 'i-0aaa', tags: { TicketKeyFleet: 'edge' }, pingStatus: 'Online', run: answer({ action: 'active', exitCode: 0, generation: 7, keys: ['k1', 'k2'] }) },
      { instanceId: 'i-0bbb', tags: { TicketKeyFleet: 'edge' }, pingStatus: 'ConnectionLost', run: answer({ action: 'active', exitCode: 0, generation: 6, keys: ['k0'] }) },
    ];
    ssm.restore();
    ssm = mockRunCommand(new RunCommandFake({ [OUTPUTS.DocumentName]: fakeDocument(nodeApplierDocument(FAKE_NODE_SETTINGS) as Parameters<typeof fakeDocument>[0]) }, nodes));
    ssm.on(GetParameterCommand).resolves({ Parameter: { Value: JSON.stringify({ current: CURRENT }) } });
    const operator = await open();
    const status = await onFakeClock(operator.status({ nodes: true }));
    expect(status.nodes).toEqual([
      { node: 'i-0aaa', keys: ['k1', 'k2'], generation: 7 },
      { node: 'i-0bbb', keys: [], skipped: expect.stringMatching(/not connected to SSM/) as unknown as string },
    ]);
    // Its own comment: a rotation's status round (same document) is never taken for it, nor cancelled by it.
    expect(ssm.commandCalls(SendCommandCommand).map((call) => (call.args[0].input as { Comment?: string }).Comment)).toEqual(['TLS ticket keys: status AWSCURRENT (ticket-keys status)']);
    expect(formatStatus(status)).toMatch(/\nnodes {7}2 tagged\n {2}i-0aaa {16} generation 7\n {2}i-0bbb {16} skipped: .*not connected to SSM/);
  });

  it('rotate starts a rotation of the stack\'s secret, with a token of its own', async () => {
    // RotateSecret answers with the ARN and the VersionId of the new version
    // (https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_RotateSecret.html).
    secrets.on(RotateSecretCommand).resolves({ ARN: SECRET, VersionId: 'v9' });
    expect(await (await open()).rotate()).toBe('v9');
    const input = secrets.commandCalls(RotateSecretCommand)[0]!.args[0].input;
    expect(input.SecretId).toBe(SECRET);
    expect(input.ClientRequestToken).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('revoke tags the secret as the console path does, then starts the rotation; a reason no tag can hold is refused before any call', async () => {
    secrets.on(TagResourceCommand).resolves({});
    secrets.on(RotateSecretCommand).resolves({ ARN: SECRET, VersionId: 'v9' });
    const operator = await open();
    await expect(operator.revoke('alice; rm -rf /')).rejects.toThrow(new OperatorError('--reason must be 1 to 256 letters, digits, spaces or _ . : / = + - @ (a tag value): say who and why, like "alice: INC-4711"'));
    expect(secrets.calls()).toEqual([]);
    expect(await operator.revoke('alice: INC-4711')).toBe('v9');
    expect(secrets.calls().map((call) => call.args[0].constructor.name)).toEqual(['TagResourceCommand', 'RotateSecretCommand']);
    expect(secrets.commandCalls(TagResourceCommand)[0]!.args[0].input.Tags).toEqual([{ Key: 'RevokeTicketKeys', Value: 'alice: INC-4711' }]);
    // Tagged, but the rotation could not start: said so, since the next rotation revokes anyway. A
    // caller without the permission gets AccessDeniedException, "You do not have sufficient access
    // to perform this action" (https://docs.aws.amazon.com/secretsmanager/latest/apireference/CommonErrors.html).
    secrets.on(RotateSecretCommand).rejects(Object.assign(new Error('User is not authorized to perform: secretsmanager:RotateSecret'), { name: 'AccessDeniedException' }));
    await expect(operator.revoke('alice: INC-4711')).rejects.toThrow(
      new OperatorError(
        'the revocation is requested (the secret carries the RevokeTicketKeys tag), but starting its rotation failed: AccessDeniedException: User is not authorized to perform: secretsmanager:RotateSecret; the next rotation revokes: start it with `ticket-keys rotate` once that is fixed',
      ),
    );
  });

  it('verify runs the verifier\'s canary and returns its report; a failed function is said with its message', async () => {
    const report = { ok: true, expectedKey: CURRENT.currentKey, nodes: [], pairs: { tried: 4, resumed: 4 } };
    lambda.on(InvokeCommand).resolves({ StatusCode: 200, Payload: new TextEncoder().encode(JSON.stringify(report)) as never });
    expect(await (await open()).verify()).toEqual(report);
    expect(JSON.parse(new TextDecoder().decode(lambda.commandCalls(InvokeCommand)[0]!.args[0].input.Payload as Uint8Array))).toEqual({ action: 'canary' });
    // A function that throws answers 200 with FunctionError set and the error in the payload
    // (https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html).
    lambda.on(InvokeCommand).resolves({ StatusCode: 200, FunctionError: 'Unhandled', Payload: new TextEncoder().encode(JSON.stringify({ errorMessage: 'no running instance carries the tag TicketKeyFleet=edge' })) as never });
    await expect((await open()).verify()).rejects.toThrow('the verifier function failed: no running instance carries the tag TicketKeyFleet=edge');
  });

  it('names a stack that does not exist, and what --secret-id alone cannot do', async () => {
    await expect(StackOperator.open(clients(), { stack: 'Nope' })).rejects.toThrow(new OperatorError('no stack Nope in this account and region: check --stack and AWS_REGION'));
    await expect(StackOperator.open(clients(), {})).rejects.toThrow(/give --stack NAME/);
    const bySecret = await StackOperator.open(clients(), { secretId: SECRET });
    await expect(bySecret.verify()).rejects.toThrow("this needs the stack's VerifierFunctionName output: give --stack NAME rather than --secret-id");
  });
});

describe('the calls the operator\'s commands make', () => {
  it('are the ones the README lists for an operator\'s IAM policy, and no other', () => {
    const calls = sdkCallsOf(join(PROJECT_ROOT, 'src', 'cli', 'aws.ts'));
    expect(calls).toEqual([
      'cloudformation:DescribeStacks',
      'lambda:InvokeFunction',
      'logs:FilterLogEvents',
      'secretsmanager:DescribeSecret',
      'secretsmanager:RotateSecret',
      'secretsmanager:TagResource',
      'ssm:CancelCommand',
      'ssm:DescribeInstanceInformation',
      'ssm:GetCommandInvocation',
      'ssm:GetParameter',
      'ssm:ListCommandInvocations',
      'ssm:ListCommands',
      'ssm:SendCommand',
    ]);
    const readme = readFileSync(join(PROJECT_ROOT, 'README.md'), 'utf8');
    const operatorSection = readme.slice(readme.indexOf('Their calls, for an operator\'s IAM policy'), readme.indexOf('which `RotateSecret` needs.'));
    for (const call of calls) expect(operatorSection, call).toContain(call.split(':')[1] as string);
  });
});

describe('the CLI on AWS without a region or credentials', () => {
  it('says in one line what to set, and sends nothing', () => {
    const home = mkdtempSync(join(tmpdir(), 'no-aws-'));
    try {
      const environment = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('AWS_')));
      const run = (extra: Record<string, string>) =>
        spawnSync(process.execPath, [join(PROJECT_ROOT, 'dist', 'src', 'cli.js'), 'status', '--stack', 'TicketKeyRotation'], {
          // No warning of the SDK's about the machine's Node.js version between the lines checked.
          env: { ...environment, HOME: home, AWS_EC2_METADATA_DISABLED: 'true', NODE_NO_WARNINGS: '1', ...extra },
          encoding: 'utf8',
          timeout: 30_000,
        });
      const noRegion = run({});
      expect(noRegion.status).toBe(1);
      expect(noRegion.stderr).toBe('ticket-keys: no AWS region: set AWS_REGION (or AWS_PROFILE, with a region in its profile)\n');
      const noCredentials = run({ AWS_REGION: 'eu-west-1' });
      expect(noCredentials.status).toBe(1);
      expect(noCredentials.stderr).toBe('ticket-keys: no AWS credentials: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run where an instance or task role gives them\n');
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });
});
