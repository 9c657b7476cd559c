import { mockClient } from 'aws-sdk-client-mock';
import { randomUUID } from 'node:crypto';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { LambdaClient } from '@aws-sdk/client-lambda';
import { SendCommandCommand, SSMClient } from '@aws-sdk/client-ssm';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { AWS_CLIENT_CONFIG, VERIFIER_INVOKE_CLIENT_CONFIG } from '../../src/aws/clients.js';
import { VERIFIER_TIMEOUT_SECONDS } from '../../src/aws/contract.js';
import { runRotationStep, settingsFromEnvironment, type RotationEvent } from '../../src/aws/rotation-function.js';
import { currentKey, EMPTY_KEY_SET_PLACEHOLDER, parseKeySet, type KeySet } from '../../src/core/keyset.js';
import { TicketKeyRotationStack } from '../../lib/ticket-key-rotation-stack.js';
import { deployRotationSchedule, FakeFleet, FakeParameter, FakeSecret, FakeVerifier, KEY_NAMES_PARAMETER, mockAws, type FakeNode } from '../support/aws-fakes.js';
import { captureStdout, expectNoMaterial, logLines } from '../support/helpers.js';
import { FAKE_CLOCK, lambdaContext, onFakeClock, type TestLambdaContext } from '../support/lambda-context.js';

const ENVIRONMENT = {
  KEY_LENGTH: '80',
  ROTATION_INTERVAL_SECONDS: '43200',
  TICKET_LIFETIME_SECONDS: '86400',
  DOCUMENT_NAME: 'TicketKeys-NodeApplier',
  TARGET_TAG_KEY: 'TicketKeyFleet',
  TARGET_TAG_VALUE: 'edge',
  MAX_CONCURRENCY: '50',
  MAX_ERRORS: '0',
  COMMAND_OUTPUT_LOG_GROUP: 'ticket-keys-output',
  VERIFIER_FUNCTION_NAME: 'ticket-keys-verifier',
  KEY_NAMES_PARAMETER,
  AWS_REGION: 'eu-west-1',
};
const STEPS = ['createSecret', 'setSecret', 'testSecret', 'finishSecret'] as const;
/** The rotation function's timeout in the stack: each step is one invocation with the whole of it. */
const ROTATION_TIMEOUT_SECONDS = 900;

type Handler = (event: RotationEvent, context: TestLambdaContext) => Promise<void>;

let synthesized: Template | undefined;
/**
 * The properties of one resource of the stack as `cdk deploy` would create it with cdk.json's
 * defaults. The functions' code is not bundled: only resource properties are read here.
 */
function synthesizedResource(type: string, prefix: string): Record<string, unknown> {
  const app = new App({ context: { 'aws:cdk:bundling-stacks': [] } });
  synthesized ??= Template.fromStack(new TicketKeyRotationStack(app, 'TicketKeyRotation', { rotation: { targetTagKey: 'TicketKeyFleet', targetTagValue: 'edge' } }));
  const matches = Object.entries(synthesized.findResources(type)).filter(([id]) => id.startsWith(prefix));
  expect(matches).toHaveLength(1);
  return (matches[0]![1] as { Properties: Record<string, unknown> }).Properties;
}

describe('the rotation function handler (AWS mocked)', () => {
  let handler: Handler;
  let secret: FakeSecret;
  let fleet: FakeFleet;
  let mocks: ReturnType<typeof mockAws>;
  let verifier: FakeVerifier;
  let keyNames: FakeParameter;
  let output: string[];
  const everything: string[] = [];
  const allSets: KeySet[] = [];

  beforeAll(async () => {
    Object.assign(process.env, ENVIRONMENT);
    ({ handler } = await import('../../lambda/rotation.js'));
  });
  beforeEach(() => {
    // Run Command takes seconds on its own clock; the steps poll it on the same fake clock.
    vi.useFakeTimers(FAKE_CLOCK);
    secret = new FakeSecret(EMPTY_KEY_SET_PLACEHOLDER);
    fleet = new FakeFleet(secret, ['i-0aaa', 'i-0bbb', 'i-0ccc'].map((instanceId) => ({ instanceId, keys: [] })));
    verifier = new FakeVerifier();
    keyNames = new FakeParameter(KEY_NAMES_PARAMETER, '{}');
    mocks = mockAws(secret, fleet, verifier, keyNames);
    output = [];
    captureStdout(output);
  });
  afterEach(() => {
    vi.useRealTimers();
    vi.restoreAllMocks();
    mocks.secrets.restore();
    mocks.ssm.restore();
    mocks.lambda.restore();
    everything.push(...output);
    for (const value of secret.values.values()) {
      try {
        allSets.push(parseKeySet(value));
      } catch {
        // the placeholder or a deliberately malformed value
      }
    }
  });

  /** Starts over with another secret behind the mocks. */
  const useSecret = (replacement: FakeSecret) => {
    secret = replacement;
    mocks.secrets.restore();
    mocks.ssm.restore();
    mocks.lambda.restore();
    mocks = mockAws(secret, fleet, verifier, keyNames);
  };
  const step = (Step: string, token: string) => onFakeClock(handler({ Step, SecretId: secret.arn, ClientRequestToken: token }, lambdaContext(ROTATION_TIMEOUT_SECONDS)));
  const rotate = async (token = secret.startRotation()): Promise<string> => {
    for (const name of STEPS) await step(name, token);
    return token;
  };
  const stepLogs = () => logLines(output, 'rotation step');
  const metricValues = (name: string) => output.filter((chunk) => chunk.includes('"_aws"')).map((chunk) => (JSON.parse(chunk) as Record<string, unknown>)[name]).filter((value) => value !== undefined);
  const metricNames = () => output.filter((chunk) => chunk.includes('"_aws"')).flatMap((chunk) => Object.keys(JSON.parse(chunk)));
  const failure = async (promise: Promise<unknown>): Promise<string> => {
    const error = await promise.then(
      () => undefined,
      (caught: Error) => caught,
    );
    expect(error, 'the step should have failed').toBeInstanceOf(Error);
    everything.push((error as Error).message);
    return (error as Error).message;
  };

  it('rotates from the empty secret to generation 1 on every node, then to 2; one JSON log line per step', async () => {
    const first = await rotate();
    expect(secret.currentGeneration()).toBe(1);
    expect(fleet.nodes.map((node) => node.generation)).toEqual([1, 1, 1]);
    const second = await rotate();
    expect(secret.currentGeneration()).toBe(2);
    // The version before keeps no stage (finishSecret takes AWSPREVIOUS off it).
    expect(secret.holder('AWSPREVIOUS')).toBeUndefined();
    expect(secret.describe().VersionIdsToStages[first]).toBeUndefined();
    expect(secret.holder('AWSCURRENT')).toBe(second);
    expect(secret.holder('AWSPENDING')).toBeUndefined();
    const logs = stepLogs();
    expect(logs.map((log) => log.step)).toEqual([...STEPS, ...STEPS]);
    for (const log of logs) expect(log).toMatchObject({ secret: secret.arn, outcome: 'succeeded', durationMs: expect.any(Number) });
    const current = parseKeySet(secret.get({ VersionStage: 'AWSCURRENT' }).SecretString);
    // The names the verifier checks against: the current key, and no rollout in flight.
    expect(keyNames.names()).toEqual({ current: { versionId: second, generation: 2, currentKey: currentKey(current).name } });
    expect(logs[4]).toMatchObject({ step: 'createSecret', generation: 2, keyNames: current.keys.map((key) => key.name).join(',') });
    expect(logs[5]).toMatchObject({ step: 'setSecret', nodesUpdated: 3, nodesFailed: 0 });
    expect(metricNames()).toEqual(expect.arrayContaining(['RotationsSucceeded', 'NodesUpdated', 'StepDuration']));
    const sent = mocks.ssm.commandCalls(SendCommandCommand).map((call) => call.args[0].input);
    expect(sent[0]).toMatchObject({
      DocumentName: 'TicketKeys-NodeApplier',
      Targets: [{ Key: 'tag:TicketKeyFleet', Values: ['edge'] }],
      MaxConcurrency: '50',
      MaxErrors: '0',
      TimeoutSeconds: 600,
      CloudWatchOutputConfig: { CloudWatchLogGroupName: 'ticket-keys-output', CloudWatchOutputEnabled: true },
    });
    for (const input of sent) expect(Object.keys(input.Parameters ?? {}).sort()).toEqual(['Action', 'SecretId', 'VersionId']);
    expectNoMaterial(JSON.stringify(sent), [parseKeySet(secret.values.get(first) as string), current]);
    // Tickets are captured before the second rotation reloads the nodes (not before the first set), then verified.
    expect(verifier.captures).toEqual([second]);
    expect(verifier.verifications).toEqual([
      { versionId: first, expectedKey: parseKeySet(secret.values.get(first) as string).keys[0]!.name, captured: 'resume' },
      { versionId: second, expectedKey: current.keys[0]!.name, captured: 'resume' },
    ]);
    expect(logs[6]).toMatchObject({ step: 'testSecret', pairsTried: 12, pairsResumed: 12, continuityTried: 6, continuityResumed: 6 });
  });

  it('waits for the nodes until its own invocation is about to time out, not half-way', async () => {
    await rotate();
    const token = secret.startRotation();
    await step('createSecret', token);
    // A node stopped after the command was sent: Run Command holds its invocation until the
    // delivery timeout plus the execution timeout (600 + 300 s), longer than the step may wait.
    const send = fleet.runCommand.sendCommand.bind(fleet.runCommand);
    fleet.runCommand.sendCommand = (input) => {
      fleet.nodes[2]!.offline = true;
      return send(input);
    };
    const started = Date.now();
    const message = await failure(step('setSecret', token));
    const waited = Date.now() - started;
    expect(message).toMatch(/had not finished before the function's deadline \(2\/3 done; waiting for i-0ccc: Delayed\)/);
    // The step keeps 30 s to log and return, and stops polling within one poll of that.
    expect(waited).toBeGreaterThanOrEqual((ROTATION_TIMEOUT_SECONDS - 30 - 3) * 1000);
    expect(waited).toBeLessThanOrEqual((ROTATION_TIMEOUT_SECONDS - 30 + 3) * 1000);
  });

  it('a step that runs out of time on a large fleet goes on in Secrets Manager\'s retry without a second command, and the rotation finishes', async () => {
    // 2,000 nodes, 50 at a time (MAX_CONCURRENCY), each apply taking 30 s: about 20 minutes, more than one step may wait.
    fleet = new FakeFleet(secret, Array.from({ length: 2_000 }, (_, index) => ({ instanceId: `i-${index.toString(16).padStart(17, '0')}`, keys: [], applyMs: 30_000 })));
    useSecret(secret);
    const token = secret.startRotation();
    await step('createSecret', token);
    const message = await failure(step('setSecret', token));
    expect(message).toMatch(/SSM command \S+ to instances tagged TicketKeyFleet=edge had not finished before the function's deadline \(\d+\/2000 done/);
    const doneAtFirst = fleet.nodes.filter((node) => node.generation === 1).length;
    expect(doneAtFirst).toBeGreaterThan(1_000);
    expect(doneAtFirst).toBeLessThan(2_000);
    // "If any rotation step fails, Secrets Manager retries the entire rotation process multiple
    // times" (https://docs.aws.amazon.com/secretsmanager/latest/userguide/rotate-secrets_lambda.html), with the same token.
    await rotate(token);
    expect(secret.currentGeneration()).toBe(1);
    expect(fleet.nodes.every((node) => node.generation === 1)).toBe(true);
    // The gate's status, the apply (the retry went on with it, without asking the gate again: it was
    // checked before the apply was sent), and testSecret's status.
    expect(fleet.commands.map((command) => command.action)).toEqual(['status', 'apply', 'status']);
    expect(stepLogs().filter((line) => line.step === 'setSecret').map((line) => line.outcome)).toEqual(['failed', 'succeeded']);
  });

  it('a stopped tagged instance and a disconnected one never fail a rotation: the others rotate, both are named as skipped and counted; back, they converge and the next rotation takes all', async () => {
    await rotate();
    fleet.nodes[1]!.stopped = true;
    fleet.nodes[2]!.offline = true;
    const started = Date.now();
    await rotate();
    expect(Date.now() - started).toBeLessThan(5 * 60_000);
    expect(secret.currentGeneration()).toBe(2);
    expect(fleet.nodes.map((node) => node.generation)).toEqual([2, 1, 1]);
    const setSecret = stepLogs().filter((line) => line.step === 'setSecret').at(-1);
    expect(setSecret).toMatchObject({
      outcome: 'succeeded',
      nodesUpdated: 1,
      nodesSkipped: 2,
      skippedNodes: 'i-0bbb: not a running managed node (stopped, or its SSM agent never registered); i-0ccc: not connected to SSM (PingStatus ConnectionLost)',
    });
    expect(metricValues('NodesSkipped')).toContain(2);

    // The stopped one starts (its boot-time fetch applies AWSCURRENT); the other reconnects (the association does).
    const [, stopped, disconnected] = fleet.nodes as [FakeNode, FakeNode, FakeNode];
    stopped.stopped = false;
    expect(fleet.applyCurrent(stopped).exitCode).toBe(0);
    disconnected.offline = false;
    expect(fleet.applyCurrent(disconnected).exitCode).toBe(0);
    await rotate();
    expect(fleet.nodes.map((node) => node.generation)).toEqual([3, 3, 3]);
    expect(stepLogs().filter((line) => line.step === 'setSecret').at(-1)).toMatchObject({ outcome: 'succeeded', nodesUpdated: 3, nodesSkipped: 0 });
  });

  it('a node skipped while it may still serve is let be one generation behind, and the gate closes on it when it would be two (seen on the wire)', async () => {
    await rotate();
    const first = parseKeySet(secret.get({ VersionStage: 'AWSCURRENT' }).SecretString);
    fleet.nodes[2]!.offline = true;
    const second = await rotate();
    expect(verifier.verifications.at(-1)).toMatchObject({ versionId: second, lagging: { nodes: ['i-0ccc'], key: currentKey(first).name } });
    // Still disconnected, and the verifier sees it encrypt with generation 1's key, now a previous key.
    verifier.observed['i-0ccc'] = currentKey(first).name;
    const token = secret.startRotation();
    await step('createSecret', token);
    const message = await failure(step('setSecret', token));
    expect(message).toMatch(new RegExp(`gate closed: i-0ccc \\(not reachable through SSM, and it still serves tickets under ${currentKey(first).name}, a key of an older set\\) below the current generation 2`));
    expect(fleet.commands.filter((command) => command.versionId === token)).toHaveLength(0);
    // A skipped node that serves nothing (stopped) or already the current set does not hold the gate.
    verifier.observed['i-0ccc'] = currentKey(parseKeySet(secret.get({ VersionStage: 'AWSCURRENT' }).SecretString)).name;
    for (const name of ['setSecret', 'testSecret', 'finishSecret']) await step(name, token);
    expect(secret.currentGeneration()).toBe(3);
  });

  for (const pendingValue of ['none', 'a copy of AWSCURRENT'] as const) {
    it(`a first deploy ends with no failed step and no node touched, though no node can take keys yet (configuration test version: ${pendingValue})`, async () => {
      // At deploy the nodes have neither the node policy nor the onboarding: every apply would fail.
      for (const node of fleet.nodes) node.failWith = 'could not fetch the key set from Secrets Manager: attach the stack\'s node policy';
      const schedule = synthesizedResource('AWS::SecretsManager::RotationSchedule', 'TicketKeysKeySetRotation');
      await deployRotationSchedule(schedule, secret, step, pendingValue);
      expect(fleet.commands).toEqual([]);
      expect(secret.get({ VersionStage: 'AWSCURRENT' }).SecretString).toBe(EMPTY_KEY_SET_PLACEHOLDER);
      expect(secret.holder('AWSPENDING')).toBeUndefined();
      expect(stepLogs().map((log) => [log.step, log.kind, log.outcome])).toEqual([['testSecret', 'configuration test', 'succeeded']]);
      expect(metricNames()).not.toContain('RotationsFailed');
      // Once the nodes are onboarded, the first rotation writes generation 1 everywhere.
      for (const node of fleet.nodes) delete node.failWith;
      await rotate();
      expect(fleet.nodes.map((node) => node.generation)).toEqual([1, 1, 1]);
    });
  }

  it('a configuration test still refuses a malformed AWSCURRENT', async () => {
    useSecret(new FakeSecret('{"format":"tls-ticket-keyset"'));
    const message = await failure(deployRotationSchedule({ RotateImmediatelyOnUpdate: false }, secret, step));
    expect(message).toMatch(/^testSecret failed: the AWSCURRENT key set \(version .*\) is malformed/);
    expect(fleet.commands).toEqual([]);
  });

  it('fails testSecret, and so the rotation, on any verifier finding; nothing is promoted', async () => {
    await rotate();
    verifier.failures = [{ kind: 'continuity', subject: 'i-0aaa -> i-0ccc', detail: "a TLSv1.3 ticket i-0aaa issued before the rotation did not resume on i-0ccc" }];
    const token = secret.startRotation();
    await step('createSecret', token);
    await step('setSecret', token);
    const message = await failure(step('testSecret', token));
    expect(message).toMatch(/^testSecret failed: verification of generation 2 failed: continuity: a TLSv1\.3 ticket i-0aaa issued before the rotation did not resume on i-0ccc$/);
    expect(secret.currentGeneration()).toBe(1);
    expect(stepLogs().at(-1)).toMatchObject({ step: 'testSecret', outcome: 'failed' });
  });

  it('repeats every step harmlessly: no second version, no second reload, finish skips', async () => {
    const token = secret.startRotation();
    for (const name of STEPS) {
      await step(name, token);
      await step(name, token);
    }
    expect(secret.puts).toBe(1);
    expect(secret.currentGeneration()).toBe(1);
    const applies = fleet.commands.filter((command) => command.action === 'apply');
    expect(applies).toHaveLength(2);
    expect(stepLogs().at(-1)).toMatchObject({ step: 'finishSecret', outcome: 'skipped' });
  });

  it('a node failing in SSM fails setSecret naming it and why; nothing is promoted; a retry with the same token finishes', async () => {
    await rotate();
    fleet.nodes[1]!.failWith = "config test 'nginx -t -q' failed: unknown directive";
    const token = secret.startRotation();
    await step('createSecret', token);
    const message = await failure(step('setSecret', token));
    expect(message).toMatch(/^setSecret failed: generation 2 did not reach every node: i-0bbb: config test 'nginx -t -q' failed: unknown directive$/);
    expect(secret.currentGeneration()).toBe(1);
    const log = stepLogs().at(-1);
    expect(log).toMatchObject({ step: 'setSecret', outcome: 'failed', nodesFailed: 1, nodesUpdated: 2, failedNodes: expect.stringContaining('i-0bbb') });
    expect(metricNames()).toEqual(expect.arrayContaining(['RotationsFailed', 'NodesFailed']));
    // Secrets Manager retries the rotation with the same token: the pending set is reused.
    delete fleet.nodes[1]!.failWith;
    const putsBefore = secret.puts;
    for (const name of STEPS) await step(name, token);
    expect(secret.puts).toBe(putsBefore);
    expect(secret.currentGeneration()).toBe(2);
  });

  it('refuses to rotate from a malformed AWSCURRENT, writing nothing', async () => {
    useSecret(new FakeSecret('{"format":"tls-ticket-keyset","version":1,"generation":"seven"}'));
    const message = await failure(step('createSecret', secret.startRotation()));
    expect(message).toMatch(/createSecret failed: the AWSCURRENT key set \(version .*\) is malformed, so no rotation was started and nothing was written: key set generation "seven" is not a positive integer/);
    expect(secret.puts).toBe(0);
    expect(fleet.commands).toHaveLength(0);
  });

  it('the gate refuses to publish g+1 while a node is below g', async () => {
    await rotate();
    await rotate();
    fleet.nodes[2]!.generation = 1;
    const token = secret.startRotation();
    await step('createSecret', token);
    const message = await failure(step('setSecret', token));
    expect(message).toMatch(/gate closed: i-0ccc \(generation 1\) below the current generation 2/);
    expect(fleet.commands.filter((command) => command.versionId === token)).toHaveLength(0);
  });

  it('recovers from a rotation cancelled and cleaned up as AWS documents: the next rotation reuses the generation some nodes took, and the fleet moves on', async () => {
    await rotate();
    const cancelled = secret.startRotation();
    await step('createSecret', cancelled);
    // The rollout reaches two nodes; the third fails, and the operator cancels the rotation.
    fleet.nodes[2]!.failWith = 'the node was being patched';
    await failure(step('setSecret', cancelled));
    expect(fleet.nodes.map((node) => node.generation)).toEqual([2, 2, 1]);
    secret.cancelRotation();
    expect(() => secret.startRotation()).toThrow("A previous rotation isn't complete");
    // "You might need to remove the staging label AWSPENDING from the partially created version."
    secret.update({ VersionStage: 'AWSPENDING', RemoveFromVersionId: cancelled });
    // A newer unlabelled version that is not the cancelled set: what a configuration test may leave.
    secret.put({ ClientRequestToken: randomUUID(), SecretString: secret.get({ VersionStage: 'AWSCURRENT' }).SecretString, VersionStages: [] });
    delete fleet.nodes[2]!.failWith;
    const next = await rotate();
    expect(secret.currentGeneration()).toBe(2);
    expect(secret.get({ VersionId: next }).SecretString).toBe(secret.get({ VersionId: cancelled }).SecretString);
    expect(fleet.nodes.map((node) => node.generation)).toEqual([2, 2, 2]);
    await rotate();
    expect(secret.currentGeneration()).toBe(3);
    expect(fleet.nodes.map((node) => node.generation)).toEqual([3, 3, 3]);
  });

  it('refuses steps that are not part of a rotation, with a clear message', async () => {
    await rotate();
    expect(await failure(step('rotateEverything', secret.startRotation()))).toMatch(/unknown rotation step "rotateEverything"/);
    expect(await failure(step('setSecret', '00000000-0000-4000-8000-000000000000'))).toMatch(/has no stage for rotation/);
  });

  it('revokes when the secret carries the RevokeTicketKeys tag: every key fresh, the gate relaxed, audited, the tag withdrawn', async () => {
    await rotate();
    const before = parseKeySet(secret.get({ VersionStage: 'AWSCURRENT' }).SecretString);
    await rotate();
    const current = parseKeySet(secret.get({ VersionStage: 'AWSCURRENT' }).SecretString);
    // A node left behind would close the gate for a rotation; a revocation goes through on purpose.
    fleet.nodes[2]!.generation = 1;
    secret.tags.set('RevokeTicketKeys', 'alice@example.com: INC-4711, key exposed in a core dump');
    const token = await rotate();
    const revoked = parseKeySet(secret.get({ VersionStage: 'AWSCURRENT' }).SecretString);
    expect(secret.holder('AWSCURRENT')).toBe(token);
    expect(revoked.generation).toBe(current.generation + 1);
    expect(revoked.keys).toHaveLength(2);
    const old = new Set([...before.keys, ...current.keys].map((key) => key.name));
    expect(revoked.keys.some((key) => old.has(key.name))).toBe(false);
    expect(fleet.nodes.map((node) => node.generation)).toEqual([revoked.generation, revoked.generation, revoked.generation]);
    expect(verifier.captures).toContain(token);
    expect(verifier.verifications.at(-1)).toMatchObject({ versionId: token, captured: 'be refused' });
    expect(secret.tags.has('RevokeTicketKeys')).toBe(false);
    const logs = stepLogs().filter((line) => line.versionId === token);
    expect(logs.map((line) => [line.step, line.kind, line.outcome])).toEqual(STEPS.map((name) => [name, 'revocation', 'succeeded']));
    expect(logs.every((line) => line.requestedBy === 'alice@example.com: INC-4711, key exposed in a core dump')).toBe(true);
    const audit = output
      .flatMap((chunk) => chunk.split('\n'))
      .filter((line) => line.includes('"message":"revocation"'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(audit).toEqual([
      expect.objectContaining({
        level: 'INFO',
        step: 'finishSecret',
        outcome: 'succeeded',
        versionId: token,
        generation: revoked.generation,
        requestedBy: 'alice@example.com: INC-4711, key exposed in a core dump',
        timestamp: expect.any(String),
      }),
    ]);
    expect(metricNames()).toContain('RevocationsFinished');
    // The next rotation is an ordinary one again, retaining the revocation's current key.
    const next = await rotate();
    expect(stepLogs().filter((line) => line.versionId === next).every((line) => line.kind === 'rotation')).toBe(true);
    expect(verifier.verifications.at(-1)).toMatchObject({ versionId: next, captured: 'resume' });
  });

  it('leaves no key material in any log line or error message', () => {
    expect(allSets.length).toBeGreaterThan(3);
    expectNoMaterial(everything.join('\n'), allSets);
  });
});

/** Secrets Manager's JSON protocol over the fake secret: the answer to one request, or the error to send. */
function secretsManagerAnswer(secret: FakeSecret, target: string, body: string): { statusCode: number; body: unknown } {
  const operations: Record<string, (input: never) => unknown> = {
    'secretsmanager.DescribeSecret': () => secret.describe(),
    'secretsmanager.GetSecretValue': (input) => secret.get(input),
    'secretsmanager.PutSecretValue': (input) => secret.put(input),
    // The JSON protocol carries timestamps as epoch seconds.
    'secretsmanager.ListSecretVersionIds': (input) => {
      const page = secret.listVersionIds(input);
      return { ...page, Versions: page.Versions.map((version) => ({ ...version, CreatedDate: version.CreatedDate.getTime() / 1000 })) };
    },
  };
  try {
    return { statusCode: 200, body: operations[target]!(JSON.parse(body) as never) };
  } catch (error) {
    return { statusCode: 400, body: { __type: (error as Error).name, message: (error as Error).message } };
  }
}

const TEST_CREDENTIALS = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'not-a-secret' };

async function createSecretStep(secret: FakeSecret, token: string, client: SecretsManagerClient): Promise<void> {
  const logger = new Logger({ serviceName: 'test', logLevel: 'SILENT' });
  const metrics = new Metrics({ namespace: 'Test', serviceName: 'test' });
  vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
  // createSecret publishes the pending key's name; this test is about the Secrets Manager client.
  const ssm = new SSMClient({});
  new FakeParameter(KEY_NAMES_PARAMETER, '{}').mock(mockClient(ssm));
  try {
    await runRotationStep({ Step: 'createSecret', SecretId: secret.arn, ClientRequestToken: token }, lambdaContext(ROTATION_TIMEOUT_SECONDS), {
      secrets: client,
      ssm,
      lambda: new LambdaClient({}),
      logger,
      metrics,
      settings: settingsFromEnvironment(ENVIRONMENT),
    });
  } finally {
    vi.restoreAllMocks();
  }
}

/**
 * A real HTTP server on 127.0.0.1 playing Secrets Manager, which leaves the requests `hang`
 * picks unanswered: the client's own timeouts and retries run as they would against AWS.
 */
async function hangingSecretsManager(secret: FakeSecret, hang: (request: number) => boolean) {
  const unanswered: ServerResponse[] = [];
  let requests = 0;
  const server = createServer((request, response) => {
    let body = '';
    request.on('data', (chunk: Buffer) => (body += chunk.toString()));
    request.on('end', () => {
      requests += 1;
      if (hang(requests)) {
        unanswered.push(response);
        return;
      }
      const answer = secretsManagerAnswer(secret, String(request.headers['x-amz-target']), body);
      response.writeHead(answer.statusCode, { 'content-type': 'application/x-amz-json-1.1' }).end(JSON.stringify(answer.body));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    /** The handler's client settings, with a short answer timeout so that the test runs in seconds. */
    client: new SecretsManagerClient({
      ...AWS_CLIENT_CONFIG,
      requestHandler: { ...AWS_CLIENT_CONFIG.requestHandler, requestTimeout: 250 },
      endpoint: `http://127.0.0.1:${port}`,
      region: 'eu-west-1',
      credentials: TEST_CREDENTIALS,
    }),
    requests: () => requests,
    close: async () => {
      for (const response of unanswered) response.destroy();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

describe('throttling and timeouts', () => {
  it('throttling is retried by the clients the handler builds', async () => {
    const secret = new FakeSecret(EMPTY_KEY_SET_PLACEHOLDER);
    const token = secret.startRotation();
    let requests = 0;
    const client = new SecretsManagerClient({
      ...AWS_CLIENT_CONFIG,
      region: 'eu-west-1',
      credentials: TEST_CREDENTIALS,
      requestHandler: {
        handle: async (request: { headers: Record<string, string>; body: string }) => {
          requests += 1;
          const respond = (statusCode: number, body: unknown) => ({
            response: { statusCode, headers: { 'content-type': 'application/x-amz-json-1.1' }, body: new TextEncoder().encode(JSON.stringify(body)) },
          });
          if (requests % 2 === 1) return respond(400, { __type: 'ThrottlingException', message: 'Rate exceeded' });
          const answer = secretsManagerAnswer(secret, request.headers['x-amz-target'] as string, request.body);
          return respond(answer.statusCode, answer.body);
        },
      },
    });
    await createSecretStep(secret, token, client);
    expect(parseKeySet(secret.get({ VersionId: token }).SecretString).generation).toBe(1);
    // Every call was throttled once before it went through.
    expect(requests % 2).toBe(0);
    expect(requests).toBeGreaterThanOrEqual(6);
  });

  it('every client gives up on a call with no connection in 3 s or no answer in 10 s; the verifier invoke waits as long as the verifier may run', () => {
    expect(AWS_CLIENT_CONFIG.requestHandler).toEqual({ connectionTimeout: 3_000, requestTimeout: 10_000, throwOnRequestTimeout: true });
    expect(VERIFIER_INVOKE_CLIENT_CONFIG.requestHandler.requestTimeout).toBeGreaterThan(VERIFIER_TIMEOUT_SECONDS * 1000);
  });

  it('a call that hangs times out and is retried; the step finishes with one pending version', async () => {
    const secret = new FakeSecret(EMPTY_KEY_SET_PLACEHOLDER);
    const token = secret.startRotation();
    const manager = await hangingSecretsManager(secret, (request) => request % 2 === 1);
    try {
      await createSecretStep(secret, token, manager.client);
    } finally {
      await manager.close();
    }
    expect(parseKeySet(secret.get({ VersionId: token }).SecretString).generation).toBe(1);
    expect(secret.puts).toBe(1);
    expect(manager.requests()).toBeGreaterThanOrEqual(6);
  });

  it('Secrets Manager never answering fails the step with a timeout after every attempt, having written nothing', async () => {
    const secret = new FakeSecret(EMPTY_KEY_SET_PLACEHOLDER);
    const token = secret.startRotation();
    const manager = await hangingSecretsManager(secret, () => true);
    try {
      await expect(createSecretStep(secret, token, manager.client)).rejects.toMatchObject({ name: 'TimeoutError' });
    } finally {
      await manager.close();
    }
    expect(manager.requests()).toBe(AWS_CLIENT_CONFIG.maxAttempts);
    expect(secret.puts).toBe(0);
  }, 30_000);
});
