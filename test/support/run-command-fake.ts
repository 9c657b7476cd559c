import { randomUUID } from 'node:crypto';
import * as ssmModule from '@aws-sdk/client-ssm';
import { InvalidParameters, InvocationDoesNotExist, type CommandInvocation } from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import type { NodeApplierSettings } from '../../lib/node-applier-document.js';

/**
 * SSM Run Command as AWS documents it, on whatever clock Date.now() reads (vitest's fake timers
 * included), for the code that sends commands and waits for them. Each behaviour cites its page;
 * where AWS leaves a number out, the fake picks one and says so.
 */

/** What a node's run of the document produced. */
export interface RunOutput {
  stdout: string;
  stderr: string;
  exitCode: number;
}

export interface ManagedNode {
  instanceId: string;
  tags: Record<string, string>;
  /**
   * The agent's connection (DescribeInstanceInformation's PingStatus: Online, ConnectionLost;
   * https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_InstanceInformation.html).
   * A stopped instance, or one whose agent lost its connection, gets nothing delivered.
   */
  pingStatus: 'Online' | 'ConnectionLost';
  /** The node no longer exists (terminated) or is not a managed node at all: "Undeliverable". */
  gone?: boolean;
  /**
   * A stopped instance: Run Command cannot deliver to it (like ConnectionLost), and
   * DescribeInstanceInformation "does not return information for nodes that are either Stopped or
   * Terminated" (https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_DescribeInstanceInformation.html).
   */
  stopped?: boolean;
  /** Runs the document's script on the node. */
  run(documentName: string, parameters: Record<string, string>): Promise<RunOutput> | RunOutput;
  /** How long the run takes on the clock, or a run with these parameters (the promise settling ends it too). @default 1 s */
  runMs?: number | ((parameters: Record<string, string>) => number);
}

/** A Command document as the fake needs it: its parameters' constraints and its step's time limit. */
export interface FakeDocument {
  parameters: Record<string, { allowedPattern?: string; allowedValues?: string[]; default?: string }>;
  /** The step's `timeoutSeconds` (aws:runShellScript: 3600 when unset). */
  executionTimeoutSeconds: number;
}

/** What the SSM agent does with {{ Name }} in a document's script before it runs it. */
export function interpolate(command: string, parameters: Record<string, string>): string {
  return command.replace(/\{\{ *(\w+) *\}\}/g, (_, name: string) => {
    const value = parameters[name];
    if (value === undefined) throw new Error(`the document references parameter ${name}, which the command does not pass`);
    return value;
  });
}

/** The document of a synthesized AWS::SSM::Document's Content. */
export function fakeDocument(content: { parameters: FakeDocument['parameters']; mainSteps: { inputs: { timeoutSeconds?: string } }[] }): FakeDocument {
  return { parameters: content.parameters, executionTimeoutSeconds: Number(content.mainSteps[0]?.inputs.timeoutSeconds ?? 3600) };
}

/**
 * Not documented: how long after SendCommand its invocations can be listed. "The Run Command API
 * follows an eventual consistency model ... might not be immediately visible to all subsequent
 * commands you run" (https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_GetCommandInvocation.html).
 */
export const VISIBILITY_DELAY_MS = 1_500;
/** Not documented: how soon the agent of an online node picks a command up. */
const DELIVERY_MS = 500;
/** Not documented: how soon an undelivered invocation shows Delayed ("The system will try to send the command again"). */
const DELAYED_AFTER_MS = 30_000;
/** CommandPlugin.Output: "Maximum length of 2500" (https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_CommandPlugin.html). */
export const PLUGIN_OUTPUT_LIMIT = 2_500;
/** GetCommandInvocation: "The first 24,000 characters written by the plugin to stdout", "the first 8,000" of stderr (API_GetCommandInvocation.html). */
const STDOUT_LIMIT = 24_000;
const STDERR_LIMIT = 8_000;
/** ListCommandInvocations' MaxResults is 1 to 50; its default is not documented: a small one makes callers follow NextToken. */
const DEFAULT_PAGE_SIZE = 2;

type Terminal = 'Success' | 'Failed' | 'Cancelled' | 'TimedOut';
interface Invocation {
  node: ManagedNode;
  status: 'Pending' | 'Delayed' | 'InProgress' | Terminal;
  details: string;
  startedAt?: number;
  output?: RunOutput;
  settled?: boolean;
}
interface Command {
  id: string;
  documentName: string;
  parameters: Record<string, string>;
  sentAt: number;
  /** Delivery timeout: "If this time is reached and the command hasn't already started running, it won't run." */
  timeoutSeconds: number;
  maxConcurrency: string;
  maxErrors: string;
  comment: string;
  invocations: Invocation[];
  /** CancelCommand was called for the whole command. */
  cancelled?: boolean;
}

function limit(value: string, targets: number): number {
  return value.endsWith('%') ? Math.ceil((Number(value.slice(0, -1)) / 100) * targets) : Number(value);
}

export class RunCommandFake {
  readonly commands: Command[] = [];

  constructor(
    readonly documents: Record<string, FakeDocument>,
    readonly nodes: ManagedNode[],
  ) {}

  /**
   * SendCommand (https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_SendCommand.html):
   * parameters checked against the document's allowedPattern and allowedValues (InvalidParameters),
   * TimeoutSeconds 30 to 2592000, targets by tag (`tag:KEY`).
   */
  sendCommand(input: {
    DocumentName?: string;
    Targets?: { Key?: string; Values?: string[] }[];
    Parameters?: Record<string, string[]>;
    TimeoutSeconds?: number;
    MaxConcurrency?: string;
    MaxErrors?: string;
    Comment?: string;
  }): { Command: { CommandId: string; Status: string } } {
    const document = this.documents[input.DocumentName ?? ''];
    if (document === undefined) throw new Error(`InvalidDocument: document ${input.DocumentName} does not exist`);
    const parameters: Record<string, string> = {};
    for (const [name, spec] of Object.entries(document.parameters)) {
      const given = input.Parameters?.[name];
      const value = given?.[0] ?? spec.default;
      if (value === undefined) throw new InvalidParameters({ message: `parameter ${name} is required`, $metadata: {} });
      if (spec.allowedPattern !== undefined && !new RegExp(spec.allowedPattern).test(value)) {
        throw new InvalidParameters({ message: `parameter ${name} "${value}" fails to match the pattern ${spec.allowedPattern}`, $metadata: {} });
      }
      if (spec.allowedValues !== undefined && !spec.allowedValues.includes(value)) {
        throw new InvalidParameters({ message: `parameter ${name} "${value}" is not one of ${spec.allowedValues.join(', ')}`, $metadata: {} });
      }
      parameters[name] = value;
    }
    for (const name of Object.keys(input.Parameters ?? {})) {
      if (!(name in document.parameters)) throw new InvalidParameters({ message: `document ${input.DocumentName} has no parameter ${name}`, $metadata: {} });
    }
    const timeoutSeconds = input.TimeoutSeconds ?? 3600;
    if (timeoutSeconds < 30 || timeoutSeconds > 2_592_000) throw new Error(`ValidationException: TimeoutSeconds ${timeoutSeconds} is not from 30 to 2592000`);
    const [target] = input.Targets ?? [];
    const tagKey = target?.Key?.startsWith('tag:') ? target.Key.slice(4) : undefined;
    if (tagKey === undefined) throw new Error('the fake targets by tag only');
    const targeted = this.nodes.filter((node) => target?.Values?.includes(node.tags[tagKey] ?? '\u0000'));
    const command: Command = {
      id: randomUUID(),
      documentName: input.DocumentName ?? '',
      parameters,
      sentAt: Date.now(),
      timeoutSeconds,
      maxConcurrency: input.MaxConcurrency ?? '50',
      maxErrors: input.MaxErrors ?? '0',
      comment: input.Comment ?? '',
      invocations: targeted.map((node) => ({ node, status: 'Pending', details: 'Pending' })),
    };
    this.commands.push(command);
    return { Command: { CommandId: command.id, Status: 'Pending' } };
  }

  /**
   * Moves a command's invocations on to now. Statuses and their details as "Understanding command
   * statuses" lists them (https://docs.aws.amazon.com/systems-manager/latest/userguide/monitor-commands.html):
   * an undelivered invocation is Pending, then Delayed ("The system retries again"), and Delivery
   * Timed Out once the delivery timeout plus the execution timeout have passed; a run longer than
   * the execution timeout is Execution Timed Out; once errors (Failed, Execution Timed Out) exceed
   * MaxErrors, invocations not yet started are Terminated ("subsequent command invocations were
   * canceled by the system"; rate control: https://docs.aws.amazon.com/systems-manager/latest/userguide/send-commands-multiple.html).
   * At most MaxConcurrency run at once.
   */
  private advance(command: Command): void {
    const runTime = (node: ManagedNode, parameters: Record<string, string>): number => (typeof node.runMs === 'function' ? node.runMs(parameters) : (node.runMs ?? 1_000));
    const now = Date.now();
    const document = this.documents[command.documentName]!;
    const executionMs = document.executionTimeoutSeconds * 1000;
    // MaxConcurrency bounds the invocations running "at the same time" (rate control page above), so
    // Run Command starts the next one as soon as one ends, not when someone looks: replay the time
    // since the last look, each freed slot taken at the moment it was freed.
    const freedAt: number[] = [];
    for (let changed = true; changed; ) {
      changed = false;
      for (const invocation of command.invocations) {
        if (invocation.status !== 'InProgress') continue;
        const { startedAt = now } = invocation;
        if (now - startedAt >= executionMs && !invocation.settled) {
          invocation.status = 'TimedOut';
          invocation.details = 'Execution Timed Out';
          freedAt.push(startedAt + executionMs);
          changed = true;
        } else if (invocation.settled && now - startedAt >= runTime(invocation.node, command.parameters)) {
          const failed = invocation.output!.exitCode !== 0;
          invocation.status = failed ? 'Failed' : 'Success';
          invocation.details = failed ? 'Failed' : 'Success';
          freedAt.push(startedAt + runTime(invocation.node, command.parameters));
          changed = true;
        }
      }
      freedAt.sort((a, b) => a - b);
      const errors = command.invocations.filter((invocation) => (invocation.status === 'Failed' && invocation.details !== 'Undeliverable') || invocation.details === 'Execution Timed Out').length;
      const stopped = errors > limit(command.maxErrors, command.invocations.length);
      let running = command.invocations.filter((invocation) => invocation.status === 'InProgress').length;
      for (const invocation of command.invocations) {
        if (invocation.status !== 'Pending' && invocation.status !== 'Delayed') continue;
        if (stopped) {
          // StatusDetails carries the status the documentation names; Status is the API's enum
          // (https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_CommandInvocation.html).
          invocation.status = 'Cancelled';
          invocation.details = 'Terminated';
          continue;
        }
        const waited = now - command.sentAt;
        if (invocation.node.gone === true) {
          // Undeliverable: "The node might not exist or it might not be responding" (monitor-commands
          // page above). Terminal, and it does not count against MaxErrors.
          if (waited >= DELIVERY_MS) {
            invocation.status = 'Failed';
            invocation.details = 'Undeliverable';
          }
          continue;
        }
        if (invocation.node.pingStatus !== 'Online' || invocation.node.stopped === true) {
          if (waited >= (command.timeoutSeconds + document.executionTimeoutSeconds) * 1000) {
            invocation.status = 'TimedOut';
            invocation.details = 'Delivery Timed Out';
          } else if (waited >= DELAYED_AFTER_MS) {
            invocation.status = 'Delayed';
            invocation.details = 'Delayed';
          }
          continue;
        }
        if (waited < DELIVERY_MS || running >= limit(command.maxConcurrency, command.invocations.length)) continue;
        running += 1;
        invocation.status = 'InProgress';
        invocation.details = 'InProgress';
        invocation.startedAt = Math.max(freedAt.shift() ?? now, command.sentAt + DELIVERY_MS);
        changed = true;
        const settle = (output: RunOutput): void => {
          invocation.output = output;
          invocation.settled = true;
        };
        const output = invocation.node.run(command.documentName, command.parameters);
        // A node that answers at once (a model) settles now; a real script when it ends.
        if (!(output instanceof Promise)) settle(output);
        else void output.then(settle, (error: Error) => settle({ stdout: '', stderr: error.message, exitCode: 1 }));
      }
    }
  }

  private find(commandId: string | undefined): Command {
    const command = this.commands.find((candidate) => candidate.id === commandId);
    if (command === undefined) throw new Error(`InvalidCommandId: ${commandId}`);
    this.advance(command);
    return command;
  }

  private visible(command: Command): boolean {
    return Date.now() - command.sentAt >= VISIBILITY_DELAY_MS;
  }

  /**
   * ListCommands: one command by id, or the commands that match every filter, newest first
   * (filter keys DocumentName, Status and InvokedAfter here; https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_ListCommands.html,
   * API_CommandFilter.html), each with its overall status and counts (API_Command.html).
   */
  listCommands(input: { CommandId?: string; Filters?: { key?: string; value?: string }[] }): { Commands: Record<string, unknown>[] } {
    if (input.CommandId === undefined) {
      const matching = [...this.commands].reverse().map((command) => this.listCommands({ CommandId: command.id }).Commands[0]!);
      return {
        Commands: matching.filter((command) =>
          (input.Filters ?? []).every((filter) => {
            if (filter.key === 'DocumentName') return command.DocumentName === filter.value;
            if (filter.key === 'Status') return command.Status === filter.value;
            if (filter.key === 'InvokedAfter') return (command.RequestedDateTime as Date).getTime() >= Date.parse(filter.value ?? '');
            throw new Error(`the fake does not model the ListCommands filter ${filter.key}`);
          }),
        ),
      };
    }
    const command = this.find(input.CommandId);
    const { invocations } = command;
    const done = invocations.filter((invocation) => ['Success', 'Failed', 'Cancelled', 'TimedOut'].includes(invocation.status));
    const errors = invocations.filter((invocation) => (invocation.status === 'Failed' && invocation.details !== 'Undeliverable') || invocation.details === 'Execution Timed Out').length;
    const deliveryTimedOut = invocations.filter((invocation) => invocation.details === 'Delivery Timed Out').length;
    let status: string;
    // A cancelled command is Cancelling until its running invocations end, then Cancelled ("The
    // command was terminated before it was completed"; monitor-commands page above).
    if (invocations.length === 0) status = 'Failed';
    else if (command.cancelled === true) status = done.length < invocations.length ? 'Cancelling' : 'Cancelled';
    else if (done.length < invocations.length) status = done.length === 0 && invocations.every((invocation) => invocation.status === 'Pending') ? 'Pending' : 'InProgress';
    else if (errors > limit(command.maxErrors, invocations.length)) status = 'Failed';
    else if (deliveryTimedOut > limit(command.maxErrors, invocations.length)) status = 'TimedOut';
    else status = 'Success';
    return {
      Commands: [
        {
          CommandId: command.id,
          DocumentName: command.documentName,
          Comment: command.comment,
          RequestedDateTime: new Date(command.sentAt),
          Status: status,
          StatusDetails: invocations.length === 0 ? 'No Instances In Tag' : status,
          TargetCount: invocations.length,
          CompletedCount: done.length,
          ErrorCount: errors,
          DeliveryTimedOutCount: deliveryTimedOut,
        },
      ],
    };
  }

  /**
   * A plugin's output as ListCommandInvocations returns it: at most 2,500 characters (API doc),
   * made up the way the SSM agent makes it (TruncateOutput in
   * https://github.com/aws/amazon-ssm-agent/blob/mainline/agent/framework/processor/executer/iohandler/iohandler.go):
   * stdout, then stderr under an ERROR title; what does not fit is cut from the longer stream, or
   * from both, each marked as truncated.
   */
  private pluginOutput(invocation: Invocation): string {
    const { stdout = '', stderr = '' } = invocation.output ?? {};
    const title = stderr === '' ? '' : '\n----------ERROR-------\n';
    const cutOut = '\n---Output truncated---';
    const cutError = '\n---Error truncated----';
    const room = PLUGIN_OUTPUT_LIMIT - title.length;
    if (stdout.length + stderr.length < room) return `${stdout}${title}${stderr}`;
    if (stdout.length > room / 2 && stderr.length > room / 2) {
      const half = Math.floor((room - cutOut.length - cutError.length) / 2);
      return `${stdout.slice(0, half)}${cutOut}${title}${stderr.slice(0, half)}${cutError}`;
    }
    if (stdout.length <= room / 2) return `${stdout}${title}${stderr.slice(0, room - cutError.length - stdout.length)}${cutError}`;
    return `${stdout.slice(0, room - cutOut.length - stderr.length)}${cutOut}${title}${stderr}`;
  }

  /**
   * ListCommandInvocations (https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_ListCommandInvocations.html):
   * nothing until the invocations are visible, then a page at a time; with Details, each plugin's
   * output cut at 2,500 characters.
   */
  listCommandInvocations(input: { CommandId?: string; Details?: boolean; MaxResults?: number; NextToken?: string }): { CommandInvocations: CommandInvocation[]; NextToken?: string } {
    const command = this.find(input.CommandId);
    if (input.MaxResults !== undefined && (input.MaxResults < 1 || input.MaxResults > 50)) throw new Error('ValidationException: MaxResults must be from 1 to 50');
    const all = this.visible(command) ? command.invocations : [];
    const start = Number(input.NextToken ?? 0);
    const size = input.MaxResults ?? DEFAULT_PAGE_SIZE;
    const page = all.slice(start, start + size).map(
      (invocation): CommandInvocation => ({
        CommandId: command.id,
        InstanceId: invocation.node.instanceId,
        DocumentName: command.documentName,
        Status: invocation.status,
        StatusDetails: invocation.details,
        ...(input.Details === true
          ? { CommandPlugins: [{ Name: 'runShellScript', Status: invocation.status === 'Delayed' ? 'Pending' : (invocation.status as 'Pending'), Output: this.pluginOutput(invocation) }] }
          : {}),
      }),
    );
    return { CommandInvocations: page, ...(start + size < all.length ? { NextToken: String(start + size) } : {}) };
  }

  /** GetCommandInvocation: InvocationDoesNotExist until visible; stdout's first 24,000 characters, stderr's first 8,000. */
  getCommandInvocation(input: { CommandId?: string; InstanceId?: string }): Record<string, unknown> {
    const command = this.find(input.CommandId);
    const invocation = command.invocations.find((candidate) => candidate.node.instanceId === input.InstanceId);
    if (!this.visible(command) || invocation === undefined) {
      throw new InvocationDoesNotExist({ message: "The command ID and managed node ID you specified didn't match any invocations.", $metadata: {} });
    }
    const finished = invocation.settled && !['Pending', 'Delayed', 'InProgress'].includes(invocation.status);
    // ResponseCode -1: the command has not run on the node, or the node did not receive it (API_GetCommandInvocation.html); unfinished runs too, here.
    return {
      CommandId: command.id,
      InstanceId: invocation.node.instanceId,
      Status: invocation.status,
      StatusDetails: invocation.details,
      ResponseCode: finished ? invocation.output!.exitCode : -1,
      StandardOutputContent: finished ? invocation.output!.stdout.slice(0, STDOUT_LIMIT) : '',
      StandardErrorContent: finished ? invocation.output!.stderr.slice(0, STDERR_LIMIT) : '',
    };
  }

  /**
   * DescribeInstanceInformation: the managed nodes that are not stopped or terminated, with their
   * PingStatus; Filters by `tag:KEY` (which "can't be combined with other filter types"); at most
   * 50 a page (https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_DescribeInstanceInformation.html,
   * API_InstanceInformationStringFilter.html).
   */
  describeInstanceInformation(input: { Filters?: { Key?: string; Values?: string[] }[]; MaxResults?: number; NextToken?: string } = {}): {
    InstanceInformationList: { InstanceId: string; PingStatus: string; ResourceType: string }[];
    NextToken?: string;
  } {
    if (input.MaxResults !== undefined && (input.MaxResults < 5 || input.MaxResults > 50)) throw new Error('ValidationException: MaxResults must be from 5 to 50');
    const tagFilters = (input.Filters ?? []).filter((filter) => filter.Key?.startsWith('tag:'));
    if (tagFilters.length > 0 && tagFilters.length !== (input.Filters ?? []).length) throw new Error('InvalidFilterKey: tag filters can\'t be combined with other filter types');
    const listed = this.nodes
      .filter((node) => node.stopped !== true && node.gone !== true)
      .filter((node) => tagFilters.every((filter) => filter.Values?.includes(node.tags[filter.Key!.slice(4)] ?? '\u0000')));
    const start = Number(input.NextToken ?? 0);
    const size = input.MaxResults ?? 10;
    return {
      InstanceInformationList: listed.slice(start, start + size).map((node) => ({ InstanceId: node.instanceId, PingStatus: node.pingStatus, ResourceType: 'EC2Instance' })),
      ...(start + size < listed.length ? { NextToken: String(start + size) } : {}),
    };
  }

  /**
   * CancelCommand: "Attempts to cancel the command"; invocations that have not started are
   * Cancelled, running ones may finish (https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_CancelCommand.html).
   */
  cancelCommand(input: { CommandId?: string; InstanceIds?: string[] }): Record<string, never> {
    const command = this.find(input.CommandId);
    if (input.InstanceIds === undefined) command.cancelled = true;
    for (const invocation of command.invocations) {
      if (input.InstanceIds !== undefined && !input.InstanceIds.includes(invocation.node.instanceId)) continue;
      if (invocation.status === 'Pending' || invocation.status === 'Delayed') {
        invocation.status = 'Cancelled';
        invocation.details = 'Cancelled';
      }
    }
    return {};
  }
}

/** The node settings the handler tests' document is built with (the stack's defaults for nginx). */
export const FAKE_NODE_SETTINGS: NodeApplierSettings = {
  flavor: 'nginx',
  keyDirectory: '/run/tls-ticket-keys',
  includePath: '/run/tls-ticket-keys/ticket-keys.conf',
  testCommand: 'nginx -t -q',
  configDumpCommand: 'nginx -T',
  reloadCommand: 'systemctl reload nginx',
  allowPersistentKeyDirectory: false,
};

/**
 * Every SSMClient answers from `fake` (aws-sdk-client-mock). `sdk` is the SDK module whose
 * classes to mock: the ES module by default, or the CommonJS build a Lambda bundle requires.
 */
export function mockRunCommand(fake: RunCommandFake, sdk: typeof ssmModule = ssmModule): ReturnType<typeof mockClient> {
  const ssm = mockClient(sdk.SSMClient);
  ssm.on(sdk.SendCommandCommand).callsFake((input) => fake.sendCommand(input));
  ssm.on(sdk.ListCommandsCommand).callsFake((input) => fake.listCommands(input));
  ssm.on(sdk.ListCommandInvocationsCommand).callsFake((input) => fake.listCommandInvocations(input));
  ssm.on(sdk.GetCommandInvocationCommand).callsFake((input) => fake.getCommandInvocation(input));
  ssm.on(sdk.DescribeInstanceInformationCommand).callsFake((input) => fake.describeInstanceInformation(input));
  ssm.on(sdk.CancelCommandCommand).callsFake((input) => fake.cancelCommand(input));
  return ssm;
}
