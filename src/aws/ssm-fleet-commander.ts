import {
  ListCommandsCommand,
  paginateListCommandInvocations,
  SendCommandCommand,
  type CommandInvocation,
  type SSMClient,
} from '@aws-sdk/client-ssm';
import { setTimeout as sleep } from 'node:timers/promises';
import { RotationError, type FleetCommander, type NodeResult, type NodeStatus } from '../core/rotation.js';

export interface SsmFleetSettings {
  documentName: string;
  secretArn: string;
  tagKey: string;
  tagValue: string;
  /** SSM rate control, as SendCommand takes it: "50" or "10%". */
  maxConcurrency: string;
  maxErrors: string;
  outputLogGroup: string;
  /** Stop waiting for nodes at this time (epoch milliseconds): the Lambda's own deadline, less a margin. */
  deadline: () => number;
  pollIntervalMs?: number;
}

/** What the node applier printed as its one summary line. */
interface ApplierSummary {
  action?: string;
  exitCode?: number;
  generation?: number;
  keys?: string[];
  error?: string;
}

const DELIVERY_TIMEOUT_SECONDS = 600;
const TERMINAL = new Set(['Success', 'Failed', 'TimedOut', 'Cancelled', 'Delivery Timed Out', 'Execution Timed Out', 'Undeliverable', 'Terminated', 'InvalidPlatform', 'AccessDenied']);

/** The applier's summary: the last line of the invocation's standard output that is a JSON object. */
export function applierSummary(invocation: CommandInvocation): ApplierSummary | undefined {
  const output = invocation.CommandPlugins?.map((plugin) => plugin.Output ?? '').join('\n') ?? '';
  const stdout = output.split('----------ERROR-------')[0] ?? '';
  for (const line of stdout.split('\n').reverse()) {
    const trimmed = line.trim();
    if (!trimmed.startsWith('{')) continue;
    try {
      return JSON.parse(trimmed) as ApplierSummary;
    } catch {
      // not the summary
    }
  }
  return undefined;
}

/** Runs the node applier's SSM Command document on every instance with the tag. */
export class SsmFleetCommander implements FleetCommander {
  constructor(
    private readonly client: SSMClient,
    private readonly settings: SsmFleetSettings,
  ) {}

  async apply(versionId: string): Promise<NodeResult[]> {
    const invocations = await this.run('apply', versionId);
    return invocations.map((invocation) => {
      const summary = applierSummary(invocation);
      const ok = invocation.Status === 'Success' && summary?.exitCode === 0;
      return {
        node: invocation.InstanceId ?? 'unknown instance',
        ok,
        keys: summary?.keys ?? [],
        ...(summary?.generation !== undefined ? { generation: summary.generation } : {}),
        ...(summary?.action !== undefined ? { action: summary.action } : {}),
        ...(ok ? {} : { error: summary?.error ?? `SSM status ${invocation.Status ?? 'unknown'}: ${invocation.StatusDetails ?? 'no details'}` }),
      };
    });
  }

  async status(): Promise<NodeStatus[]> {
    const invocations = await this.run('status', '');
    return invocations.map((invocation) => {
      const summary = applierSummary(invocation);
      const node = invocation.InstanceId ?? 'unknown instance';
      if (invocation.Status !== 'Success' || summary === undefined) {
        return { node, keys: [], error: summary?.error ?? `SSM status ${invocation.Status ?? 'unknown'}: ${invocation.StatusDetails ?? 'no details'}` };
      }
      if (summary.action === 'damaged') {
        return { node, keys: summary.keys ?? [], error: 'its key files or include no longer match its recorded generation' };
      }
      return { node, keys: summary.keys ?? [], ...(summary.generation !== undefined ? { generation: summary.generation } : {}) };
    });
  }

  private async run(action: 'apply' | 'status', versionId: string): Promise<CommandInvocation[]> {
    const { settings } = this;
    const sent = await this.client.send(
      new SendCommandCommand({
        DocumentName: settings.documentName,
        Targets: [{ Key: `tag:${settings.tagKey}`, Values: [settings.tagValue] }],
        Parameters: { SecretId: [settings.secretArn], VersionId: [versionId], Action: [action] },
        // Offline nodes time out as "Delivery Timed Out" well within the function's 15 minutes.
        TimeoutSeconds: DELIVERY_TIMEOUT_SECONDS,
        MaxConcurrency: settings.maxConcurrency,
        MaxErrors: settings.maxErrors,
        Comment: `TLS ticket keys: ${action} ${versionId || 'AWSCURRENT'}`.slice(0, 100),
        CloudWatchOutputConfig: { CloudWatchLogGroupName: settings.outputLogGroup, CloudWatchOutputEnabled: true },
      }),
    );
    const commandId = sent.Command?.CommandId;
    if (commandId === undefined) throw new RotationError('SSM SendCommand returned no command id');
    const target = `instances tagged ${settings.tagKey}=${settings.tagValue}`;
    for (;;) {
      const command = (await this.client.send(new ListCommandsCommand({ CommandId: commandId }))).Commands?.[0];
      if (command?.Status !== undefined && TERMINAL.has(command.Status)) {
        const invocations: CommandInvocation[] = [];
        for await (const page of paginateListCommandInvocations({ client: this.client }, { CommandId: commandId, Details: true })) {
          invocations.push(...(page.CommandInvocations ?? []));
        }
        if ((command.TargetCount ?? 0) === 0) {
          throw new RotationError(`no ${target} answered SSM command ${commandId}: check the tag and that the nodes run the SSM agent`);
        }
        const unsent = (command.TargetCount ?? 0) - invocations.length;
        if (unsent > 0) {
          invocations.push({ InstanceId: `${unsent} more node(s)`, Status: 'Cancelled', StatusDetails: `never ran: SSM stopped at max errors ${settings.maxErrors}` });
        }
        return invocations;
      }
      if (Date.now() > settings.deadline()) {
        throw new RotationError(
          `SSM command ${commandId} to ${target} had not finished before the function's deadline ` +
            `(${command?.CompletedCount ?? 0}/${command?.TargetCount ?? '?'} done): raise maxConcurrency or look for stuck nodes`,
        );
      }
      await sleep(settings.pollIntervalMs ?? 2000);
    }
  }
}
