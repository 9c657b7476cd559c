import { ListCommandInvocationsCommand, ListCommandsCommand, SendCommandCommand, SSMClient } from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, describe, expect, it } from 'vitest';
import { applierSummary, SsmFleetCommander, type SsmFleetSettings } from '../src/aws/ssm-fleet-commander.js';

const ssm = mockClient(SSMClient);
const settings = (overrides: Partial<SsmFleetSettings> = {}): SsmFleetSettings => ({
  documentName: 'doc',
  secretArn: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:k-AbCdEf',
  tagKey: 'TicketKeyFleet',
  tagValue: 'edge',
  maxConcurrency: '50',
  maxErrors: '0',
  outputLogGroup: 'out',
  deadline: Date.now() + 60_000,
  pollIntervalMs: 5,
  ...overrides,
});

describe('SSM fleet commander', () => {
  afterEach(() => ssm.reset());

  it('reads the summary from standard output, ignoring the error section', () => {
    const summary = applierSummary({
      CommandPlugins: [{ Output: 'noise\n{"action":"restored","exitCode":5,"keys":[],"error":"config test failed"}\n\n----------ERROR-------\n{"not":"this"}\n' }],
    });
    expect(summary).toEqual({ action: 'restored', exitCode: 5, keys: [], error: 'config test failed' });
    expect(applierSummary({ CommandPlugins: [{ Output: 'no json here' }] })).toBeUndefined();
  });

  it('waits while the command runs, then reports each node', async () => {
    ssm.on(SendCommandCommand).resolves({ Command: { CommandId: 'c-1' } });
    ssm.on(ListCommandsCommand)
      .resolvesOnce({ Commands: [{ Status: 'InProgress', TargetCount: 2, CompletedCount: 1 }] })
      .resolves({ Commands: [{ Status: 'Failed', TargetCount: 2, CompletedCount: 2 }] });
    ssm.on(ListCommandInvocationsCommand).resolves({
      CommandInvocations: [
        { InstanceId: 'i-1', Status: 'Success', CommandPlugins: [{ Output: '{"action":"applied","exitCode":0,"generation":3,"keys":["a","b"]}' }] },
        { InstanceId: 'i-2', Status: 'TimedOut', StatusDetails: 'Delivery Timed Out', CommandPlugins: [] },
      ],
    });
    const results = await new SsmFleetCommander(new SSMClient({}), settings()).apply('v-1');
    expect(results).toEqual([
      { node: 'i-1', ok: true, generation: 3, action: 'applied', keys: ['a', 'b'] },
      { node: 'i-2', ok: false, keys: [], error: 'SSM status TimedOut: Delivery Timed Out' },
    ]);
    expect(ssm.commandCalls(ListCommandsCommand)).toHaveLength(2);
  });

  it('names nodes SSM never reached after max errors, and refuses an empty fleet', async () => {
    ssm.on(SendCommandCommand).resolves({ Command: { CommandId: 'c-2' } });
    ssm.on(ListCommandsCommand).resolves({ Commands: [{ Status: 'Failed', TargetCount: 3, CompletedCount: 1 }] });
    ssm.on(ListCommandInvocationsCommand).resolves({
      CommandInvocations: [{ InstanceId: 'i-1', Status: 'Failed', CommandPlugins: [{ Output: '{"action":"restored","exitCode":5,"keys":[],"error":"boom"}' }] }],
    });
    const results = await new SsmFleetCommander(new SSMClient({}), settings()).apply('v-2');
    expect(results.map((result) => [result.node, result.ok, result.error])).toEqual([
      ['i-1', false, 'boom'],
      ['2 more node(s)', false, 'SSM status Cancelled: never ran: SSM stopped at max errors 0'],
    ]);
    ssm.on(ListCommandsCommand).resolves({ Commands: [{ Status: 'Success', TargetCount: 0 }] });
    ssm.on(ListCommandInvocationsCommand).resolves({ CommandInvocations: [] });
    await expect(new SsmFleetCommander(new SSMClient({}), settings()).status()).rejects.toThrow(
      /no instances tagged TicketKeyFleet=edge answered SSM command c-2: check the tag/,
    );
  });

  it('gives up at the deadline, saying how far the command got', async () => {
    ssm.on(SendCommandCommand).resolves({ Command: { CommandId: 'c-3' } });
    ssm.on(ListCommandsCommand).resolves({ Commands: [{ Status: 'InProgress', TargetCount: 4, CompletedCount: 3 }] });
    await expect(new SsmFleetCommander(new SSMClient({}), settings({ deadline: Date.now() - 1 })).apply('v-3')).rejects.toThrow(
      /SSM command c-3 to instances tagged TicketKeyFleet=edge had not finished before the function's deadline \(3\/4 done\)/,
    );
  });
});
