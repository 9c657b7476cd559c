import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { DescribeInstancesCommand, EC2Client } from '@aws-sdk/client-ec2';
import { DescribeSecretCommand, GetSecretValueCommand, PutSecretValueCommand, SecretsManagerClient, UpdateSecretVersionStageCommand } from '@aws-sdk/client-secrets-manager';
import { GetParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { runVerifier, verifierSettingsFromEnvironment, type VerifierEvent, type VerifierResponse } from '../../src/aws/verifier-function.js';
import type { VerificationReport } from '../../src/verify/verifier.js';
import { currentKey, type KeySet } from '../../src/core/keyset.js';
import type { PublishedKeyNames } from '../../src/core/key-names.js';
import { FakeParameter, FakeSecret, KEY_NAMES_PARAMETER } from '../support/aws-fakes.js';
import { startLocalFleet, type FleetNode, type LocalFleet } from '../../src/local/fleet.js';
import { applyTo, applyToAll, captureStdout, expectNoMaterial, lineage, logLines } from '../support/helpers.js';
import { lambdaContext, type TestLambdaContext } from '../support/lambda-context.js';
import { VERIFIER_TIMEOUT_SECONDS } from '../../src/aws/contract.js';

const STORE_ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:ticket-store-GhIjKl';

describe('the verifier function (AWS mocked, real nginx nodes)', () => {
  let fleet: LocalFleet;
  let lambdaHandler: (event: VerifierEvent, context: TestLambdaContext) => Promise<VerifierResponse>;
  /** One invocation, with the stack's verifier timeout. */
  const handler = (event: VerifierEvent) => lambdaHandler(event, lambdaContext(VERIFIER_TIMEOUT_SECONDS));
  const sets = lineage(3);
  const [gen1, gen2, gen3] = sets as [KeySet, KeySet, KeySet];
  const secrets = mockClient(SecretsManagerClient);
  const ec2 = mockClient(EC2Client);
  const ssm = mockClient(SSMClient);
  const keyNames = new FakeParameter(KEY_NAMES_PARAMETER, '{}');
  /** What the rotation publishes: AWSCURRENT's key name, and while a rotation rolls out, AWSPENDING's. */
  const publish = (current: KeySet, pending?: KeySet): void => {
    const names: PublishedKeyNames = { current: { versionId: `version-${current.generation}`, generation: current.generation, currentKey: currentKey(current).name } };
    if (pending) names.pending = { versionId: `version-${pending.generation}`, generation: pending.generation, currentKey: currentKey(pending).name };
    keyNames.value = JSON.stringify(names);
  };
  let store: FakeSecret;
  let output: string[];
  const everything: string[] = [];

  beforeAll(async () => {
    fleet = await startLocalFleet({ nodeCount: 3 });
    Object.assign(process.env, {
      KEY_NAMES_PARAMETER,
      TICKET_STORE_SECRET_ARN: STORE_ARN,
      TARGET_TAG_KEY: 'TicketKeyFleet',
      TARGET_TAG_VALUE: 'edge',
      VERIFY_STATIC_NODES: fleet.nodes.map((node) => `${node.host}:${node.port}`).join(','),
      AWS_REGION: 'eu-west-1',
    });
    ({ handler: lambdaHandler } = await import('../../lambda/verifier.js'));
  });
  afterAll(async () => {
    await fleet?.stop();
    secrets.restore();
    ec2.restore();
    ssm.restore();
    expectNoMaterial(everything.join('\n'), sets);
  });
  beforeEach(async () => {
    publish(gen1);
    store = new FakeSecret('{}', STORE_ARN);
    secrets.reset();
    ssm.reset();
    keyNames.mock(ssm);
    secrets.on(GetSecretValueCommand, { SecretId: STORE_ARN }).callsFake((input) => store.get(input));
    secrets.on(PutSecretValueCommand, { SecretId: STORE_ARN }).callsFake((input) => store.put(input));
    secrets.on(DescribeSecretCommand, { SecretId: STORE_ARN }).callsFake(() => store.describe());
    secrets.on(UpdateSecretVersionStageCommand, { SecretId: STORE_ARN }).callsFake((input) => store.update(input));
    await applyToAll(fleet, gen1, ['--allow-downgrade']);
    output = [];
    captureStdout(output);
  });
  afterEach(() => {
    vi.restoreAllMocks();
    everything.push(...output);
    // Sessions live only in the ticket store: never in a log line or a response.
    for (const value of store.values.values()) {
      const stored = JSON.parse(value) as { tickets?: { session: string }[] };
      for (const ticket of stored.tickets ?? []) expect(everything.join('\n')).not.toContain(ticket.session.slice(0, 40));
    }
  });

  const metrics = () => Object.assign({}, ...output.filter((chunk) => chunk.includes('"_aws"')).map((chunk) => JSON.parse(chunk))) as Record<string, unknown>;

  it('canary: checks every node against the current key the rotation published, reading no key set, and publishes the figures', async () => {
    const report = await handler({ action: 'canary' });
    // The only secret it reads is its own ticket store; the key names come from the parameter.
    expect(secrets.commandCalls(GetSecretValueCommand).filter((call) => call.args[0].input.SecretId !== STORE_ARN)).toEqual([]);
    expect(ssm.commandCalls(GetParameterCommand).map((call) => call.args[0].input.Name)).toEqual([KEY_NAMES_PARAMETER]);
    everything.push(JSON.stringify(report));
    expect(report).toMatchObject({ action: 'canary', ok: true, expectedKey: currentKey(gen1).name, pairs: { tried: 12, resumed: 12 } });
    expect(metrics()).toMatchObject({ CrossNodeResumptionRate: 100, NodesOnExpectedKey: 3, NodesNotOnExpectedKey: 0, UnreachableNodes: 0, VerificationFailures: 0 });
    expect(output.join('')).toMatch(/"message":"verification".*"ok":true/);
  });

  it('canary: passes at every point of a healthy rotation, while the nodes take the pending set one by one', async () => {
    const canary = async (when: string) => {
      const report = (await handler({ action: 'canary' })) as VerificationReport;
      everything.push(JSON.stringify(report));
      expect(report.failures.map((failure) => failure.detail), when).toEqual([]);
      expect(metrics(), when).toMatchObject({ CrossNodeResumptionRate: 100, NodesNotOnExpectedKey: 0 });
      output.length = 0;
    };
    await canary('before the rotation');
    publish(gen1, gen2);
    await canary('with generation 2 pending, no node on it yet');
    for (const node of fleet.nodes) {
      await applyTo(fleet, node, gen2);
      await canary(`after ${node.name} took generation 2`);
    }
    publish(gen2);
    await canary('after finishSecret');
    // A node that is on neither set still fails it.
    await applyTo(fleet, fleet.nodes[0]!, gen1, ['--allow-downgrade']);
    publish(gen2, gen3);
    const report = (await handler({ action: 'canary' })) as VerificationReport;
    everything.push(JSON.stringify(report));
    expect(report.ok).toBe(false);
    expect(new Set(report.failures.filter((failure) => failure.kind === 'wrong key').map((failure) => failure.subject))).toEqual(new Set([`${fleet.nodes[0]!.host}:${fleet.nodes[0]!.port}`]));
  });

  it('canary: skips, saying why, before the first rotation, even before any node is tagged (a fresh deploy raises no alarm)', async () => {
    keyNames.value = '{}';
    expect(await handler({ action: 'canary' })).toEqual({ action: 'canary', skipped: 'the key set has no keys yet: the first rotation writes generation 1' });
    ec2.reset();
    ec2.on(DescribeInstancesCommand).resolves({ Reservations: [] });
    const settings = { ...verifierSettingsFromEnvironment(process.env), staticNodes: [] };
    const deps = { ec2: new EC2Client({}), secrets: new SecretsManagerClient({}), ssm: new SSMClient({}), logger: new Logger({ logLevel: 'SILENT' }), metrics: new Metrics({ namespace: 'Test' }), settings };
    expect(await runVerifier({ action: 'canary' }, deps)).toEqual({ action: 'canary', skipped: 'the key set has no keys yet: the first rotation writes generation 1' });
  });

  /** The ticket store's stages: its current value, and whether any version is still labelled otherwise. */
  const storeState = () => ({ current: store.get({ VersionStage: 'AWSCURRENT' }).SecretString, labelled: Object.keys(store.describe().VersionIdsToStages).length });

  it('canary: publishes no resumption rate when no pair was tried (a one-node fleet): a missing rate raises no alarm, a 0% one would', async () => {
    const [only] = fleet.nodes as [FleetNode];
    const settings = verifierSettingsFromEnvironment({ ...process.env, VERIFY_STATIC_NODES: `${only.host}:${only.port}` });
    const deps = { ec2: new EC2Client({}), secrets: new SecretsManagerClient({}), ssm: new SSMClient({}), logger: new Logger({ logLevel: 'SILENT' }), metrics: new Metrics({ namespace: 'Test' }), settings };
    const report = (await runVerifier({ action: 'canary' }, deps)) as VerificationReport;
    expect(report).toMatchObject({ ok: true, pairs: { tried: 0, resumed: 0 } });
    expect(metrics()).toMatchObject({ NodesOnExpectedKey: 1, VerificationFailures: 0 });
    expect(metrics()).not.toHaveProperty('CrossNodeResumptionRate');
  });

  it('capture keeps tickets once per rotation in the ticket store; verify resumes them, and forgets them, pass or fail', async () => {
    const versionId = '0b7c2b1e-6b1a-4d52-9a43-1c2d3e4f5a6b';
    expect(await handler({ action: 'capture', versionId })).toEqual({ action: 'capture', versionId, captured: 6, reused: false });
    expect(await handler({ action: 'capture', versionId })).toEqual({ action: 'capture', versionId, captured: 6, reused: true });
    expect(store.puts).toBe(1);
    // The value before keeps no stage (PutSecretValue gave it AWSPREVIOUS).
    expect(storeState()).toMatchObject({ labelled: 1 });
    await applyToAll(fleet, gen2);
    const report = await handler({ action: 'verify', versionId, expectedKey: currentKey(gen2).name });
    everything.push(JSON.stringify(report));
    expect(report).toMatchObject({ action: 'verify', ok: true, continuity: { tried: 18, resumed: 18 } });
    expect(metrics()).toMatchObject({ ContinuityResumptionRate: 100 });
    expect(storeState()).toEqual({ current: '{}', labelled: 1 });
    // A retried testSecret finds none: it checks no continuity rather than keep live sessions.
    const retried = await handler({ action: 'verify', versionId, expectedKey: currentKey(gen2).name });
    expect(retried).toMatchObject({ action: 'verify', ok: true, continuity: { tried: 0, resumed: 0 } });
  });

  it('canary: forgets sessions kept for a version that is not rolling out (a rotation that failed and was cancelled)', async () => {
    const versionId = 'version-2';
    publish(gen1, gen2);
    await handler({ action: 'capture', versionId });
    // While that version rolls out, the sessions wait for its testSecret.
    await handler({ action: 'canary' });
    expect(JSON.parse(storeState().current)).toMatchObject({ versionId });
    // It no longer does: the names say nothing is pending.
    publish(gen1);
    await handler({ action: 'canary' });
    expect(storeState().current).toBe('{}');
    expect(logLines(output, 'captured tickets forgotten')).toEqual([expect.objectContaining({ versionId, reason: 'that version is not rolling out' })]);
  });

  it('verify reports a node that lost the previous key, by name (testSecret turns any finding into a failed rotation)', async () => {
    const versionId = '1b7c2b1e-6b1a-4d52-9a43-1c2d3e4f5a6b';
    await handler({ action: 'capture', versionId });
    const [first, second, forgetful] = fleet.nodes as [FleetNode, FleetNode, FleetNode];
    await applyTo(fleet, first, gen2);
    await applyTo(fleet, second, gen2);
    await applyTo(fleet, forgetful, { ...gen2, keys: gen2.keys.slice(0, 2) });
    const report = (await handler({ action: 'verify', versionId, expectedKey: currentKey(gen2).name })) as { ok: boolean; failures: { kind: string; subject: string }[] };
    everything.push(JSON.stringify(report));
    expect(report.ok).toBe(false);
    const name = `${forgetful.host}:${forgetful.port}`;
    expect(new Set(report.failures.map((failure) => `${failure.kind}: ${failure.subject.split(' -> ')[1]}`))).toEqual(new Set([`continuity: ${name}`]));
  });

  it('discovers the running instances with the tag and uses their addresses', async () => {
    const node = fleet.nodes[0]!;
    ec2.reset();
    ec2.on(DescribeInstancesCommand).resolves({
      Reservations: [{ Instances: [{ InstanceId: 'i-0bbb', PrivateIpAddress: '127.0.0.1' }, { InstanceId: 'i-0aaa', PrivateIpAddress: '127.0.0.1' }] }],
    });
    const settings = { ...verifierSettingsFromEnvironment(process.env), staticNodes: [], port: node.port };
    const deps = { ec2: new EC2Client({}), secrets: new SecretsManagerClient({}), ssm: new SSMClient({}), logger: new Logger({ logLevel: 'SILENT' }), metrics: new Metrics({ namespace: 'Test' }), settings };
    const report = (await runVerifier({ action: 'canary' }, deps)) as { ok: boolean; nodes: { node: string; address: string }[] };
    expect(report.ok).toBe(true);
    expect(report.nodes.map((entry) => [entry.node, entry.address])).toEqual([
      ['i-0aaa', `127.0.0.1:${node.port}`],
      ['i-0bbb', `127.0.0.1:${node.port}`],
    ]);
    expect(ec2.commandCalls(DescribeInstancesCommand)[0]!.args[0].input.Filters).toEqual([
      { Name: 'tag:TicketKeyFleet', Values: ['edge'] },
      { Name: 'instance-state-name', Values: ['running'] },
    ]);
    ec2.on(DescribeInstancesCommand).resolves({ Reservations: [] });
    await expect(runVerifier({ action: 'canary' }, deps)).rejects.toThrow(/no running instance carries the tag TicketKeyFleet=edge/);
  });
  it('says what to set when running tagged instances have no address it can reach, instead of "no instance carries the tag"', async () => {
    ec2.reset();
    // A private fleet: instances with no public address. DescribeInstances leaves the field out
    // (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_Instance.html: PublicIpAddress, "if applicable").
    ec2.on(DescribeInstancesCommand).resolves({
      Reservations: [{ Instances: [{ InstanceId: 'i-0aaa', PrivateIpAddress: '10.0.1.5' }, { InstanceId: 'i-0bbb', PrivateIpAddress: '10.0.1.6' }] }],
    });
    const settings = { ...verifierSettingsFromEnvironment(process.env), staticNodes: [], addresses: 'public' as const };
    const deps = { ec2: new EC2Client({}), secrets: new SecretsManagerClient({}), ssm: new SSMClient({}), logger: new Logger({ logLevel: 'SILENT' }), metrics: new Metrics({ namespace: 'Test' }), settings };
    await expect(runVerifier({ action: 'canary' }, deps)).rejects.toThrow(
      'instances i-0aaa, i-0bbb carry the tag TicketKeyFleet=edge but have no public IP address, and the verifier runs outside any VPC: set verifierVpcId and verifierSubnetIds to the nodes\' VPC so that it connects to private addresses (or list the nodes in verifierStaticNodes)',
    );
    // One node the verifier cannot reach is not left out silently either.
    ec2.on(DescribeInstancesCommand).resolves({
      Reservations: [{ Instances: [{ InstanceId: 'i-0aaa', PrivateIpAddress: '10.0.1.5', PublicIpAddress: '127.0.0.1' }, { InstanceId: 'i-0bbb', PrivateIpAddress: '10.0.1.6' }] }],
    });
    await expect(runVerifier({ action: 'canary' }, deps)).rejects.toThrow(/^instances i-0bbb carry the tag TicketKeyFleet=edge but have no public IP address/);
  });
});
