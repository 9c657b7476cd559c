import { SSMClient } from '@aws-sdk/client-ssm';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { nodeApplierDocument } from '../../lib/node-applier-document.js';
import { applierSummary, SsmFleetCommander, type SsmFleetSettings } from '../../src/aws/ssm-fleet-commander.js';
import { FAKE_CLOCK, onFakeClock } from '../support/lambda-context.js';
import { FAKE_NODE_SETTINGS, fakeDocument, mockRunCommand, PLUGIN_OUTPUT_LIMIT, RunCommandFake, type ManagedNode, type RunOutput } from '../support/run-command-fake.js';

/** The SSM fleet commander against Run Command as AWS documents it (run-command-fake.ts). */

const DOCUMENT = 'TicketKeys-NodeApplier';
const settings = (overrides: Partial<SsmFleetSettings> = {}): SsmFleetSettings => ({
  documentName: DOCUMENT,
  secretArn: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:k-AbCdEf',
  tagKey: 'TicketKeyFleet',
  tagValue: 'edge',
  maxConcurrency: '50',
  maxErrors: '0',
  outputLogGroup: 'out',
  deadline: Date.now() + 870_000,
  ...overrides,
});

const summaryLine = (summary: Record<string, unknown>): RunOutput => ({ stdout: `${JSON.stringify(summary)}\n`, stderr: '', exitCode: Number(summary.exitCode) });
const applied = (generation: number, keys = ['a', 'b']): RunOutput => summaryLine({ action: 'applied', exitCode: 0, generation, keys });

function node(instanceId: string, run: ManagedNode['run'], overrides: Partial<ManagedNode> = {}): ManagedNode {
  return { instanceId, tags: { TicketKeyFleet: 'edge' }, pingStatus: 'Online', run, ...overrides };
}

describe('SSM fleet commander, against Run Command\'s documented behaviour', () => {
  let fake: RunCommandFake;
  let mock: ReturnType<typeof mockRunCommand> | undefined;
  const start = (nodes: ManagedNode[]) => {
    mock?.restore();
    fake = new RunCommandFake({ [DOCUMENT]: fakeDocument(nodeApplierDocument(FAKE_NODE_SETTINGS) as Parameters<typeof fakeDocument>[0]) }, nodes);
    mock = mockRunCommand(fake);
  };
  beforeEach(() => vi.useFakeTimers(FAKE_CLOCK));
  afterEach(() => {
    vi.useRealTimers();
    mock?.restore();
    mock = undefined;
  });

  it('reads the summary from standard output, ignoring the error section', () => {
    const summary = applierSummary({
      CommandPlugins: [{ Output: 'noise\n{"action":"restored","exitCode":5,"keys":[],"error":"config test failed"}\n\n----------ERROR-------\n{"not":"this"}\n' }],
    });
    expect(summary).toEqual({ action: 'restored', exitCode: 5, keys: [], error: 'config test failed' });
    expect(applierSummary({ CommandPlugins: [{ Output: 'no json here' }] })).toBeUndefined();
  });

  it('waits out invocations that are not listed yet and follows every page: five nodes, each reported', async () => {
    start(['i-01', 'i-02', 'i-03', 'i-04', 'i-05'].map((id, index) => node(id, () => applied(3), { runMs: 1_000 * (index + 1) })));
    const results = await onFakeClock(new SsmFleetCommander(new SSMClient({}), settings()).apply('0b7c2b1e-6b1a-4d52-9a43-1c2d3e4f5a6b'));
    expect(results.map((result) => [result.node, result.ok, result.generation])).toEqual(['i-01', 'i-02', 'i-03', 'i-04', 'i-05'].map((id) => [id, true, 3]));
    expect(fake.commands[0]!.parameters).toEqual({ SecretId: settings().secretArn, VersionId: '0b7c2b1e-6b1a-4d52-9a43-1c2d3e4f5a6b', Action: 'apply' });
  });

  it('names the node that failed, and the nodes Run Command then never ran (max errors 0, one at a time)', async () => {
    start([
      node('i-01', () => applied(3)),
      node('i-02', () => summaryLine({ action: 'restored', exitCode: 5, keys: [], error: "config test 'nginx -t -q' failed" })),
      node('i-03', () => applied(3)),
    ]);
    const results = await onFakeClock(new SsmFleetCommander(new SSMClient({}), settings({ maxConcurrency: '1' })).apply(''));
    expect(results.map((result) => [result.node, result.ok, result.error])).toEqual([
      ['i-01', true, undefined],
      ['i-02', false, "config test 'nginx -t -q' failed"],
      ['i-03', false, 'SSM status Cancelled: Terminated'],
    ]);
  });

  it('refuses a fleet with no tagged instance, saying what to check', async () => {
    start([node('i-01', () => applied(3), { tags: { TicketKeyFleet: 'staging' } })]);
    await expect(onFakeClock(new SsmFleetCommander(new SSMClient({}), settings()).status())).rejects.toThrow(
      /no instances tagged TicketKeyFleet=edge answered SSM command .*: check the tag/,
    );
  });

  it('a stopped tagged instance and a disconnected one are skipped, named, and their invocations cancelled: the others finish without waiting for them', async () => {
    start([
      node('i-01', () => applied(3)),
      node('i-02', () => applied(3), { stopped: true }),
      node('i-03', () => applied(3), { pingStatus: 'ConnectionLost' }),
    ]);
    const started = Date.now();
    const results = await onFakeClock(new SsmFleetCommander(new SSMClient({}), settings()).apply(''));
    expect(Date.now() - started).toBeLessThan(60_000);
    expect(results.map((result) => [result.node, result.ok, result.skipped ?? result.error])).toEqual([
      ['i-01', true, undefined],
      ['i-02', false, 'not a running managed node (stopped, or its SSM agent never registered)'],
      ['i-03', false, 'not connected to SSM (PingStatus ConnectionLost)'],
    ]);
    // Nothing is left queued for them: a node that comes back runs no stale command.
    expect(fake.listCommandInvocations({ CommandId: fake.commands[0]!.id, MaxResults: 50 }).CommandInvocations.map((invocation) => [invocation.InstanceId, invocation.Status])).toEqual([
      ['i-01', 'Success'],
      ['i-02', 'Cancelled'],
      ['i-03', 'Cancelled'],
    ]);
  });

  it('a node that stops after the command was sent is named at the deadline, with what Run Command says of it', async () => {
    start([node('i-01', () => applied(3)), node('i-02', () => applied(3))]);
    const send = fake.sendCommand.bind(fake);
    fake.sendCommand = (input) => {
      fake.nodes[1]!.pingStatus = 'ConnectionLost';
      return send(input);
    };
    await expect(onFakeClock(new SsmFleetCommander(new SSMClient({}), settings()).apply(''))).rejects.toThrow(
      /had not finished before the function's deadline \(1\/2 done; waiting for i-02: Delayed\): a node Pending or Delayed is stopped or has lost its SSM connection/,
    );
  });

  it('a node Run Command cannot deliver to (terminated, or never managed) is skipped and named; the others still run', async () => {
    start([node('i-01', () => applied(3), { gone: true }), node('i-02', () => applied(3))]);
    const results = await onFakeClock(new SsmFleetCommander(new SSMClient({}), settings({ maxConcurrency: '1' })).apply(''));
    expect(results.map((result) => [result.node, result.ok, result.skipped ?? result.error])).toEqual([
      ['i-02', true, undefined],
      ['i-01', false, 'not a running managed node (stopped, or its SSM agent never registered)'],
    ]);
  });

  it('a command that ends before Run Command lists its invocations: waits for them rather than guessing', async () => {
    start([node('i-01', () => applied(3), { runMs: 0 }), node('i-02', () => applied(3), { runMs: 0 })]);
    const results = await onFakeClock(new SsmFleetCommander(new SSMClient({}), settings({ pollIntervalMs: 100 })).apply(''), 100);
    expect(results.map((result) => [result.node, result.ok, result.generation])).toEqual([
      ['i-01', true, 3],
      ['i-02', true, 3],
    ]);
  });

  it('a step that runs out of time goes on in the retry: it adopts the command it sent, never sends a second, and finishes', async () => {
    // Ten nodes two at a time, 200 s each: 1,000 s, more than one step may wait.
    start(Array.from({ length: 10 }, (_, index) => node(`i-${String(index).padStart(2, '0')}`, () => applied(3), { runMs: 200_000 })));
    const version = '0b7c2b1e-6b1a-4d52-9a43-1c2d3e4f5a6b';
    await expect(onFakeClock(new SsmFleetCommander(new SSMClient({}), settings({ maxConcurrency: '2' })).apply(version))).rejects.toThrow(/had not finished before the function's deadline \(8\/10 done/);
    const results = await onFakeClock(new SsmFleetCommander(new SSMClient({}), settings({ maxConcurrency: '2', deadline: Date.now() + 870_000 })).apply(version));
    expect(results.filter((result) => result.ok)).toHaveLength(10);
    expect(fake.commands).toHaveLength(1);
    // A status command is never adopted as an apply, nor an apply of another version.
    await onFakeClock(new SsmFleetCommander(new SSMClient({}), settings()).status());
    expect(fake.commands.map((command) => command.parameters.Action)).toEqual(['apply', 'status']);
  });

  it('a status step that runs out of time is asked again in the retry, and the old command is cancelled: never two at once', async () => {
    // Ten nodes one at a time, 100 s each: 1,000 s, more than one step may wait.
    start(Array.from({ length: 10 }, (_, index) => node(`i-${String(index).padStart(2, '0')}`, () => applied(3), { runMs: 100_000 })));
    await expect(onFakeClock(new SsmFleetCommander(new SSMClient({}), settings({ maxConcurrency: '1' })).status())).rejects.toThrow(/had not finished before the function's deadline/);
    const retry = onFakeClock(new SsmFleetCommander(new SSMClient({}), settings({ maxConcurrency: '10', deadline: Date.now() + 870_000 })).status());
    const statuses = await retry;
    expect(statuses).toHaveLength(10);
    expect(fake.commands.map((command) => command.parameters.Action)).toEqual(['status', 'status']);
    const [first, second] = fake.commands.map((command) => fake.listCommands({ CommandId: command.id }).Commands[0]!.Status);
    expect(first).toBe('Cancelled');
    expect(second).toBe('Success');
  });

  it('a run that outlasts the document\'s execution timeout (300 s) is Execution Timed Out', async () => {
    start([node('i-01', () => new Promise<RunOutput>(() => undefined))]);
    const results = await onFakeClock(new SsmFleetCommander(new SSMClient({}), settings()).apply(''));
    expect(results.map((result) => [result.node, result.error])).toEqual([['i-01', 'SSM status TimedOut: Execution Timed Out']]);
  });

  it('reads a summary longer than the 2,500 characters ListCommandInvocations keeps from GetCommandInvocation', async () => {
    // 200 keys: the summary of a set keeping a week of hourly keys.
    const keys = Array.from({ length: 200 }, (_, index) => index.toString(16).padStart(32, '0'));
    const summary = `{"action":"active","exitCode":0,"generation":9,"keys":${JSON.stringify(keys)}}\n`;
    start([
      node('i-01', () => ({ stdout: summary, stderr: '', exitCode: 0 })),
      // With something on stderr too, the agent keeps even less of stdout.
      node('i-02', () => ({ stdout: summary, stderr: 'warning: a slow reload\n', exitCode: 0 })),
    ]);
    expect(summary.length).toBeGreaterThan(PLUGIN_OUTPUT_LIMIT);
    const statuses = await onFakeClock(new SsmFleetCommander(new SSMClient({}), settings()).status());
    expect(statuses).toEqual([
      { node: 'i-01', generation: 9, keys },
      { node: 'i-02', generation: 9, keys },
    ]);
  });

  it('sends only what the document accepts: a version id that fails its pattern is refused by SSM', async () => {
    start([node('i-01', () => applied(3))]);
    await expect(onFakeClock(new SsmFleetCommander(new SSMClient({}), settings()).apply('not a version; rm -rf /'))).rejects.toThrow(/parameter VersionId .* fails to match the pattern/);
    await onFakeClock(new SsmFleetCommander(new SSMClient({}), settings()).apply('scheduled-rotation-2026-11-25T18:00:00Z'));
  });
});
