import {
  CancelCommandCommand,
  GetCommandInvocationCommand,
  ListCommandsCommand,
  paginateDescribeInstanceInformation,
  paginateListCommandInvocations,
  paginateListCommands,
  SendCommandCommand,
  type CommandInvocation,
  type SSMClient,
} from '@aws-sdk/client-ssm';
import { resultFromSummary, statusFromSummary, type ApplierSummary } from '../core/applier-summary.js';
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
  deadline: number;
  pollIntervalMs?: number;
  /**
   * Who sends the commands, when not the rotation: in their comment, so that an operator's
   * status round and the rotation's never take each other for their own (a status cancels an
   * earlier one of its own comment).
   */
  requester?: string;
}

const DELIVERY_TIMEOUT_SECONDS = 600;
/**
 * How far back a retry looks for the command its rotation sent: far longer than a step (15
 * minutes) and than Secrets Manager's retries of a rotation that takes several; the version id in
 * the comment makes any running one this rotation's.
 */
const EARLIER_COMMAND_WINDOW_MS = 6 * 3600_000;
const TERMINAL = new Set(['Success', 'Failed', 'TimedOut', 'Cancelled', 'Delivery Timed Out', 'Execution Timed Out', 'Undeliverable', 'Terminated', 'InvalidPlatform', 'AccessDenied']);

/** What a command is sent for, in its Comment (at most 100 characters): how a retry finds it. */
function commentFor(action: 'apply' | 'status', versionId: string, requester?: string): string {
  return `TLS ticket keys: ${action} ${versionId || 'AWSCURRENT'}${requester ? ` (${requester})` : ''}`.slice(0, 100);
}

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

/** Why an invocation gave no applier summary, as SSM tells it. */
function ssmFailure(invocation: CommandInvocation): string {
  return `SSM status ${invocation.Status ?? 'unknown'}: ${invocation.StatusDetails ?? 'no details'}`;
}

/** Runs the node applier's SSM Command document on every instance with the tag. */
export class SsmFleetCommander implements FleetCommander {
  constructor(
    private readonly client: SSMClient,
    private readonly settings: SsmFleetSettings,
  ) {}

  async apply(versionId: string): Promise<NodeResult[]> {
    const { invocations, skipped } = await this.run('apply', versionId);
    const results: NodeResult[] = [];
    for (const invocation of invocations) {
      const summary = await this.summaryOf(invocation);
      const node = invocation.InstanceId ?? 'unknown instance';
      results.push(summary === undefined ? { node, ok: false, keys: [], error: ssmFailure(invocation) } : resultFromSummary(node, summary));
    }
    return [...results, ...skipped.map(({ node, reason }) => ({ node, ok: false, keys: [], skipped: reason }))];
  }

  async status(): Promise<NodeStatus[]> {
    const { invocations, skipped } = await this.run('status', '');
    const statuses: NodeStatus[] = [];
    for (const invocation of invocations) {
      const summary = await this.summaryOf(invocation);
      const node = invocation.InstanceId ?? 'unknown instance';
      statuses.push(invocation.Status !== 'Success' || summary === undefined ? { node, keys: [], error: summary?.error ?? ssmFailure(invocation) } : statusFromSummary(node, summary));
    }
    return [...statuses, ...skipped.map(({ node, reason }) => ({ node, keys: [], skipped: reason }))];
  }

  /**
   * The tagged managed nodes and their agents' connection. Stopped and terminated instances are
   * not listed at all (https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_DescribeInstanceInformation.html).
   */
  private async connections(): Promise<Map<string, string>> {
    const connections = new Map<string, string>();
    const pages = paginateDescribeInstanceInformation(
      { client: this.client, pageSize: 50 },
      { Filters: [{ Key: `tag:${this.settings.tagKey}`, Values: [this.settings.tagValue] }] },
    );
    for await (const page of pages) {
      for (const node of page.InstanceInformationList ?? []) {
        if (node.InstanceId !== undefined) connections.set(node.InstanceId, node.PingStatus ?? 'unknown');
      }
    }
    return connections;
  }

  /**
   * The applier's summary. ListCommandInvocations keeps 2,500 characters of a plugin's output
   * (https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_CommandPlugin.html): a
   * set with many previous keys makes a longer summary, which GetCommandInvocation has whole
   * (its first 24,000 characters of stdout).
   */
  private async summaryOf(invocation: CommandInvocation): Promise<ApplierSummary | undefined> {
    const summary = applierSummary(invocation);
    const ran = invocation.CommandPlugins?.some((plugin) => (plugin.Output ?? '') !== '') ?? false;
    if (summary !== undefined || !ran || invocation.CommandId === undefined || invocation.InstanceId === undefined) return summary;
    const whole = await this.client.send(new GetCommandInvocationCommand({ CommandId: invocation.CommandId, InstanceId: invocation.InstanceId }));
    return applierSummary({ CommandPlugins: [{ Output: whole.StandardOutputContent ?? '' }] });
  }

  /** Whether an apply of `versionId` that an earlier invocation sent is still running. */
  async applying(versionId: string): Promise<boolean> {
    return (await this.runningCommand(commentFor('apply', versionId, this.settings.requester))) !== undefined;
  }

  /**
   * A command with this comment that an earlier invocation sent and that is still running: sent
   * within a step's lifetime, to this document (ListCommands filters:
   * https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_CommandFilter.html).
   */
  private async runningCommand(comment: string): Promise<string | undefined> {
    const since = new Date(Date.now() - EARLIER_COMMAND_WINDOW_MS).toISOString();
    const pages = paginateListCommands(
      { client: this.client },
      { Filters: [{ key: 'DocumentName', value: this.settings.documentName }, { key: 'InvokedAfter', value: since }] },
    );
    for await (const page of pages) {
      // A command being cancelled (Cancelling) is not one to go on with.
      const running = page.Commands?.find((command) => command.Comment === comment && command.Status !== undefined && !TERMINAL.has(command.Status) && command.Status !== 'Cancelling');
      if (running?.CommandId !== undefined) return running.CommandId;
    }
    return undefined;
  }

  /**
   * Sends the document to every tagged instance and waits for the ones connected to SSM. The
   * others are skipped rather than waited for: Run Command would hold their invocations until the
   * delivery timeout. Once every connected node is done, the command is cancelled for them, so
   * that none runs a stale command when it comes back.
   */
  private async run(action: 'apply' | 'status', versionId: string): Promise<{ invocations: CommandInvocation[]; skipped: { node: string; reason: string }[] }> {
    const { settings } = this;
    const connections = await this.connections();
    const online = new Set([...connections].filter(([, ping]) => ping === 'Online').map(([id]) => id));
    const skipReason = (id: string): string =>
      connections.has(id) ? `not connected to SSM (PingStatus ${connections.get(id)})` : 'not a running managed node (stopped, or its SSM agent never registered)';
    const comment = commentFor(action, versionId, settings.requester);
    // A step that ran out of time leaves its command running. The retry goes on with an apply; a
    // status it asks again (what the nodes serve now), cancelling the old one: never two at once.
    let earlier = await this.runningCommand(comment);
    if (earlier !== undefined && action === 'status') {
      await this.client.send(new CancelCommandCommand({ CommandId: earlier }));
      earlier = undefined;
    }
    const sent = earlier !== undefined ? { Command: { CommandId: earlier } } : await this.client.send(
      new SendCommandCommand({
        DocumentName: settings.documentName,
        Targets: [{ Key: `tag:${settings.tagKey}`, Values: [settings.tagValue] }],
        Parameters: { SecretId: [settings.secretArn], VersionId: [versionId], Action: [action] },
        // A node that is not connected gets "Delivery Timed Out" only after this plus the
        // document's execution timeout: the step's deadline usually comes first.
        TimeoutSeconds: DELIVERY_TIMEOUT_SECONDS,
        MaxConcurrency: settings.maxConcurrency,
        MaxErrors: settings.maxErrors,
        Comment: comment,
        CloudWatchOutputConfig: { CloudWatchLogGroupName: settings.outputLogGroup, CloudWatchOutputEnabled: true },
      }),
    );
    const commandId = sent.Command?.CommandId;
    if (commandId === undefined) throw new RotationError('SSM SendCommand returned no command id');
    const target = `instances tagged ${settings.tagKey}=${settings.tagValue}`;
    const invocationsOf = async (): Promise<CommandInvocation[]> => {
      const invocations: CommandInvocation[] = [];
      // 50 a page, the most ListCommandInvocations gives: its default is not documented.
      for await (const page of paginateListCommandInvocations({ client: this.client, pageSize: 50 }, { CommandId: commandId, Details: true })) {
        invocations.push(...(page.CommandInvocations ?? []));
      }
      return invocations;
    };
    const split = (invocations: CommandInvocation[]) => ({
      invocations: invocations.filter((invocation) => online.has(invocation.InstanceId ?? '')),
      skipped: invocations.filter((invocation) => !online.has(invocation.InstanceId ?? '')).map((invocation) => ({ node: invocation.InstanceId ?? 'unknown instance', reason: skipReason(invocation.InstanceId ?? '') })),
    });
    for (;;) {
      const command = (await this.client.send(new ListCommandsCommand({ CommandId: commandId }))).Commands?.[0];
      const finished = command?.Status !== undefined && TERMINAL.has(command.Status);
      if (finished && (command.TargetCount ?? 0) === 0) {
        throw new RotationError(`no ${target} answered SSM command ${commandId}: check the tag and that the nodes run the SSM agent`);
      }
      // Run Command is eventually consistent: invocations may not all be listed yet, so count them.
      if (finished || (command?.TargetCount !== undefined && (command.CompletedCount ?? 0) >= online.size)) {
        const invocations = await invocationsOf();
        const unlisted = (command?.TargetCount ?? 0) - invocations.length;
        const connectedDone = invocations.filter((invocation) => online.has(invocation.InstanceId ?? '')).every((invocation) => TERMINAL.has(invocation.Status ?? ''));
        if (unlisted <= 0 && connectedDone) {
          if (!finished) await this.client.send(new CancelCommandCommand({ CommandId: commandId }));
          return split(invocations);
        }
        if (finished && Date.now() > settings.deadline) {
          const { invocations: listed, skipped } = split(invocations);
          return { invocations: [...listed, { InstanceId: `${unlisted} more node(s)`, Status: 'Pending', StatusDetails: 'not listed by SSM before the function\'s deadline' }], skipped };
        }
      }
      if (!finished && Date.now() > settings.deadline) {
        const waiting = (await invocationsOf())
          .filter((invocation) => online.has(invocation.InstanceId ?? '') && !TERMINAL.has(invocation.StatusDetails ?? invocation.Status ?? ''))
          .map((invocation) => `${invocation.InstanceId ?? 'unknown instance'}: ${invocation.StatusDetails ?? invocation.Status ?? 'unknown'}`);
        throw new RotationError(
          `SSM command ${commandId} to ${target} had not finished before the function's deadline ` +
            `(${command?.CompletedCount ?? 0}/${command?.TargetCount ?? '?'} done${waiting.length > 0 ? `; waiting for ${waiting.join(', ')}` : ''}): ` +
            'a node Pending or Delayed is stopped or has lost its SSM connection; otherwise raise maxConcurrency',
        );
      }
      await new Promise((resolve) => setTimeout(resolve, settings.pollIntervalMs ?? 2000));
    }
  }
}
