import { randomUUID } from 'node:crypto';
import {
  DescribeSecretCommand,
  GetSecretValueCommand,
  PutSecretValueCommand,
  InvalidParameterException,
  InvalidRequestException,
  ListSecretVersionIdsCommand,
  ResourceExistsException,
  ResourceNotFoundException,
  SecretsManagerClient,
  UntagResourceCommand,
  UpdateSecretVersionStageCommand,
} from '@aws-sdk/client-secrets-manager';
import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import * as ssmModule from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import { parseKeySet } from '../../src/core/keyset.js';
import { nodeApplierDocument } from '../../lib/node-applier-document.js';
import { FAKE_NODE_SETTINGS, fakeDocument, mockRunCommand, RunCommandFake, type ManagedNode, type RunOutput } from './run-command-fake.js';

/** Secrets Manager's versions and stages, as the rotation protocol sees them. */
export class FakeSecret {
  values = new Map<string, string>();
  stages = new Map<string, string[]>();
  tags = new Map<string, string>();
  puts = 0;

  constructor(
    initial: string,
    readonly arn = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:ticket-keys-AbCdEf',
  ) {
    const id = randomUUID();
    this.values.set(id, initial);
    this.created.push(id);
    this.stages.set(id, ['AWSCURRENT']);
  }

  rotationEnabled = true;
  /** Creation order of every version, oldest first: ListSecretVersionIds reports each one's CreatedDate. */
  private created: string[] = [];

  /**
   * What RotateSecret does before it calls the function: a new token labelled AWSPENDING, no
   * value yet; rotation turned on again. "If the AWSPENDING staging label is present but not
   * attached to the same version as AWSCURRENT, then any later invocation of RotateSecret
   * assumes that a previous rotation request is still in progress and returns an error."
   * https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_RotateSecret.html
   */
  startRotation(): string {
    const pending = this.holder('AWSPENDING');
    if (pending !== undefined && pending !== this.holder('AWSCURRENT')) {
      throw new InvalidRequestException({ message: "A previous rotation isn't complete. That rotation will be reattempted.", $metadata: {} });
    }
    const token = randomUUID();
    this.label('AWSPENDING', token);
    this.rotationEnabled = true;
    return token;
  }

  /**
   * CancelRotateSecret "turns off automatic rotation, and if a rotation is currently in progress,
   * cancels the rotation"; the labels stay as they are, which "can leave the VersionStage labels
   * in an unexpected state. You might need to remove the staging label AWSPENDING from the
   * partially created version."
   * https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_CancelRotateSecret.html
   */
  cancelRotation(): void {
    this.rotationEnabled = false;
  }

  /**
   * ListSecretVersionIds: with IncludeDeprecated, versions without any staging label too (they
   * are "considered deprecated and are subject to deletion"); at most MaxResults a page, then a
   * NextToken. https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_ListSecretVersionIds.html
   */
  listVersionIds(input: { IncludeDeprecated?: boolean; MaxResults?: number; NextToken?: string }): {
    ARN: string;
    Versions: { VersionId: string; VersionStages: string[]; CreatedDate: Date }[];
    NextToken?: string;
  } {
    const all = this.created
      .filter((id) => this.values.has(id))
      .map((id, index) => ({ VersionId: id, VersionStages: this.stages.get(id) ?? [], CreatedDate: new Date(Date.UTC(2026, 0, 1) + index * 60_000) }))
      .filter((version) => input.IncludeDeprecated === true || version.VersionStages.length > 0);
    const start = Number(input.NextToken ?? 0);
    // The default page size is not documented: a small one makes callers follow NextToken.
    const size = input.MaxResults ?? 2;
    const page = all.slice(start, start + size);
    return { ARN: this.arn, Versions: page, ...(start + size < all.length ? { NextToken: String(start + size) } : {}) };
  }

  label(stage: string, versionId: string): void {
    for (const [id, list] of this.stages) this.stages.set(id, list.filter((name) => name !== stage));
    this.stages.set(versionId, [...(this.stages.get(versionId) ?? []), stage]);
  }

  holder(stage: string): string | undefined {
    return [...this.stages].find(([, list]) => list.includes(stage))?.[0];
  }

  /** DescribeSecret's VersionIdsToStages: "the versions of the secret that have staging labels attached" (https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_DescribeSecret.html). */
  describe(): { ARN: string; RotationEnabled: boolean; VersionIdsToStages: Record<string, string[]>; Tags: { Key: string; Value: string }[] } {
    return {
      ARN: this.arn,
      RotationEnabled: this.rotationEnabled,
      VersionIdsToStages: Object.fromEntries([...this.stages].filter(([, list]) => list.length > 0)),
      Tags: [...this.tags].map(([Key, Value]) => ({ Key, Value })),
    };
  }

  untag(input: { TagKeys?: string[] }): Record<string, never> {
    for (const key of input.TagKeys ?? []) this.tags.delete(key);
    return {};
  }

  /** GetSecretValue: a version or stage that holds no value is ResourceNotFoundException (https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_GetSecretValue.html#API_GetSecretValue_Errors). */
  get(input: { VersionId?: string; VersionStage?: string }): { ARN: string; VersionId: string; SecretString: string; VersionStages: string[] } {
    const id = input.VersionId ?? this.holder(input.VersionStage ?? 'AWSCURRENT');
    const value = id === undefined ? undefined : this.values.get(id);
    if (id === undefined || value === undefined || (input.VersionStage && !this.stages.get(id)?.includes(input.VersionStage))) {
      throw new ResourceNotFoundException({ message: "Secrets Manager can't find the specified secret value", $metadata: {} });
    }
    return { ARN: this.arn, VersionId: id, SecretString: value, VersionStages: this.stages.get(id) ?? [] };
  }

  put(input: { ClientRequestToken?: string; SecretString?: string; VersionStages?: string[] }): { ARN: string; VersionId: string } {
    // "If you use the Amazon Web Services CLI or one of the Amazon Web Services SDKs to call this
    // operation, then you can leave this parameter empty. The CLI or SDK generates a random UUID"
    // (https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_PutSecretValue.html).
    const id = input.ClientRequestToken ?? randomUUID();
    // The same token and value "succeeds but does nothing"; another value fails: "you can't modify
    // an existing version". Without VersionStages, AWSCURRENT moves to the new version.
    const existing = this.values.get(id);
    if (existing !== undefined && existing !== input.SecretString) {
      throw new ResourceExistsException({ message: 'You can’t modify an existing version, you can only create new versions.', $metadata: {} });
    }
    this.puts += 1;
    if (existing === undefined) this.created.push(id);
    this.values.set(id, input.SecretString as string);
    // "If this operation moves the staging label AWSCURRENT from another version to this version,
    // then Secrets Manager also automatically moves the staging label AWSPREVIOUS to the version
    // that AWSCURRENT was removed from" (API_PutSecretValue, VersionStages).
    const current = this.holder('AWSCURRENT');
    const stages = input.VersionStages ?? ['AWSCURRENT'];
    for (const stage of stages) this.label(stage, id);
    if (stages.includes('AWSCURRENT') && current !== undefined && current !== id) this.label('AWSPREVIOUS', current);
    return { ARN: this.arn, VersionId: id };
  }

  /**
   * UpdateSecretVersionStage: a label attached to another version moves only with
   * RemoveFromVersionId naming that version, else "the operation fails"; "Whenever you move
   * AWSCURRENT, Secrets Manager automatically moves the label AWSPREVIOUS to the version that
   * AWSCURRENT was removed from" (https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_UpdateSecretVersionStage.html).
   */
  update(input: { VersionStage?: string; MoveToVersionId?: string; RemoveFromVersionId?: string }): { ARN: string } {
    const stage = input.VersionStage as string;
    const holder = this.holder(stage);
    const attachedElsewhere = input.MoveToVersionId !== undefined && holder !== undefined && holder !== input.MoveToVersionId;
    if ((input.RemoveFromVersionId !== undefined || attachedElsewhere) && holder !== input.RemoveFromVersionId) {
      throw new InvalidParameterException({ message: `${stage} is on version ${holder ?? 'none'}, not ${input.RemoveFromVersionId ?? 'the one given'}`, $metadata: {} });
    }
    if (input.MoveToVersionId !== undefined) {
      const previous = this.holder(stage);
      this.label(stage, input.MoveToVersionId);
      if (stage === 'AWSCURRENT' && previous !== undefined && previous !== input.MoveToVersionId) this.label('AWSPREVIOUS', previous);
    } else if (input.RemoveFromVersionId !== undefined) {
      this.stages.set(input.RemoveFromVersionId, (this.stages.get(input.RemoveFromVersionId) ?? []).filter((name) => name !== stage));
    }
    return { ARN: this.arn };
  }

  currentGeneration(): number {
    return parseKeySet(this.get({ VersionStage: 'AWSCURRENT' }).SecretString).generation;
  }
}

export interface FakeNode {
  instanceId: string;
  generation?: number;
  keys: string[];
  /** When set, the applier on this node fails with this message. */
  failWith?: string;
  /** Running, but its SSM agent lost its connection (PingStatus ConnectionLost). */
  offline?: boolean;
  /** A stopped instance. */
  stopped?: boolean;
  /** How long an apply takes on the node (Run Command's invocation, reload included). @default 1 s */
  applyMs?: number;
  /** How long a status takes on the node. @default 1 s */
  statusMs?: number;
}

/** The document name the handler tests' environment gives the rotation function. */
export const FAKE_DOCUMENT_NAME = 'TicketKeys-NodeApplier';
const FLEET_TAG = { TicketKeyFleet: 'edge' };

/**
 * A tagged fleet behind Run Command (the fake in run-command-fake.ts), whose nodes answer the
 * document the way its applier does: the summary line on stdout, the README's exit codes.
 */
export class FakeFleet {
  readonly runCommand: RunCommandFake;

  constructor(
    private readonly secret: FakeSecret,
    readonly nodes: FakeNode[],
  ) {
    const document = fakeDocument(nodeApplierDocument(FAKE_NODE_SETTINGS) as Parameters<typeof fakeDocument>[0]);
    this.runCommand = new RunCommandFake({ [FAKE_DOCUMENT_NAME]: document }, nodes.map((node) => this.managed(node)));
  }

  /** Every command sent, oldest first. */
  get commands(): { action: string; versionId: string; parameters: Record<string, string> }[] {
    return this.runCommand.commands.map((command) => ({ action: command.parameters.Action ?? '', versionId: command.parameters.VersionId ?? '', parameters: command.parameters }));
  }

  private managed(node: FakeNode): ManagedNode {
    const run = (_document: string, parameters: Record<string, string>) => this.run(node, parameters);
    return {
      instanceId: node.instanceId,
      tags: FLEET_TAG,
      get pingStatus() {
        return node.offline === true ? 'ConnectionLost' : 'Online';
      },
      get stopped() {
        return node.stopped === true;
      },
      runMs: (parameters) => (parameters.Action === 'apply' ? (node.applyMs ?? 1_000) : (node.statusMs ?? 1_000)),
      run,
    };
  }

  /** What the boot-time fetch (a stopped node starting) or the association (a node reconnecting) does on a node: apply AWSCURRENT. */
  applyCurrent(node: FakeNode): RunOutput {
    return this.run(node, { Action: 'apply', VersionId: '' });
  }

  private run(node: FakeNode, parameters: Record<string, string>): RunOutput {
    const versionId = parameters.VersionId ?? '';
    const answer = (summary: Record<string, unknown>): RunOutput => {
      const exitCode = Number(summary.exitCode);
      return { stdout: `${JSON.stringify(summary)}\n`, stderr: exitCode === 0 ? '' : `apply-ticket-keys: ${String(summary.error)}\n`, exitCode };
    };
    if (parameters.Action === 'status') {
      return answer({ action: node.generation === undefined ? 'none' : 'active', exitCode: 0, keys: node.keys, ...(node.generation ? { generation: node.generation } : {}) });
    }
    if (node.failWith !== undefined) return answer({ action: 'restored', exitCode: 5, keys: [], error: node.failWith });
    const set = parseKeySet(this.secret.get(versionId ? { VersionId: versionId } : { VersionStage: 'AWSCURRENT' }).SecretString);
    const keys = set.keys.map((key) => key.name);
    // The applier's contract (README, exit 4): an older generation, or the same one with other
    // keys, is refused and nothing changes.
    const conflict =
      node.generation === undefined ? undefined
      : node.generation > set.generation ? `generation ${set.generation} is older than the active ${node.generation}`
      : node.generation === set.generation && node.keys.join() !== keys.join() ? `generation ${set.generation} is already active with other keys (two writers?)`
      : undefined;
    if (conflict !== undefined) return answer({ action: 'refused', exitCode: 4, generation: node.generation, keys: node.keys, error: conflict });
    const unchanged = node.generation === set.generation;
    node.generation = set.generation;
    node.keys = keys;
    return answer({ action: unchanged ? 'unchanged' : 'applied', exitCode: 0, generation: set.generation, keys });
  }
}

/** The verifier function as the rotation function sees it: records captures, answers verifications. */
export class FakeVerifier {
  captures: string[] = [];
  verifications: { versionId: string; expectedKey: string; captured: string; lagging?: { nodes: string[]; key: string } }[] = [];
  /** Findings to report; none means the fleet passes. */
  failures: { kind: string; subject: string; detail: string }[] = [];

  /** What observe reports per node; unlisted nodes do not answer. */
  observed: Record<string, string> = {};

  answer(event: { action: string; versionId: string; expectedKey: string; captured: string; nodes?: string[]; lagging?: { nodes: string[]; key: string } }): Record<string, unknown> {
    if (event.action === 'observe') return { action: 'observe', keys: Object.fromEntries((event.nodes ?? []).map((node) => [node, this.observed[node] ?? null])) };
    if (event.action === 'capture') {
      this.captures.push(event.versionId);
      return { action: 'capture', versionId: event.versionId, captured: 6, reused: false };
    }
    this.verifications.push({ versionId: event.versionId, expectedKey: event.expectedKey, captured: event.captured, ...(event.lagging ? { lagging: event.lagging } : {}) });
    return {
      action: 'verify',
      ok: this.failures.length === 0,
      expectedKey: event.expectedKey,
      expectedKeyInferred: false,
      nodes: [{ node: 'i-0aaa', address: '10.0.0.1:443', reachable: true, keys: {}, onExpectedKey: this.failures.length === 0 }],
      pairs: { tried: 12, resumed: 12 },
      pairsAcrossKeys: 0,
      continuity: event.captured === 'resume' ? { tried: 6, resumed: 6 } : { tried: 0, resumed: 0 },
      revocation: event.captured === 'be refused' ? { tried: 18, refused: 18 } : { tried: 0, refused: 0 },
      retired: event.captured === 'fall back to a full handshake' ? { tried: 18, fellBack: 18 } : { tried: 0, fellBack: 0 },
      peersPerNode: 2,
      failures: this.failures,
      durationMs: 40,
    };
  }
}

/**
 * A String parameter in Parameter Store. GetParameter of a name that does not exist fails with
 * ParameterNotFound (https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_GetParameter.html);
 * PutParameter of an existing name fails with ParameterAlreadyExists unless Overwrite is true
 * (https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_PutParameter.html).
 */
export class FakeParameter {
  writes = 0;

  constructor(
    readonly name: string,
    public value: string | undefined,
  ) {}

  /** Answers GetParameter and PutParameter on `ssm` with the command and error classes of `sdk` (a bundle carries its own). */
  mock(ssm: ReturnType<typeof mockClient>, sdk: typeof ssmModule = ssmModule): void {
    ssm.on(sdk.GetParameterCommand).callsFake((input: { Name: string }) => {
      if (input.Name !== this.name || this.value === undefined) throw new sdk.ParameterNotFound({ message: `parameter ${input.Name} not found`, $metadata: {} });
      return { Parameter: { Name: this.name, Type: 'String', Value: this.value, Version: this.writes + 1 } };
    });
    ssm.on(sdk.PutParameterCommand).callsFake((input: { Name: string; Value: string; Overwrite?: boolean }) => {
      if (input.Name !== this.name) throw new Error(`PutParameter of ${input.Name}: only ${this.name} is modelled`);
      if (this.value !== undefined && input.Overwrite !== true) throw new sdk.ParameterAlreadyExists({ message: `parameter ${input.Name} already exists`, $metadata: {} });
      this.value = input.Value;
      this.writes += 1;
      return { Version: this.writes + 1, Tier: 'Standard' };
    });
  }

  names(): Record<string, unknown> {
    return JSON.parse(this.value ?? '{}') as Record<string, unknown>;
  }
}

/** The key names parameter of the tests' stack. */
export const KEY_NAMES_PARAMETER = '/ticket-keys/key-names';

/** Wires the fakes behind aws-sdk-client-mock for every client instance. */
export function mockAws(
  secret: FakeSecret,
  fleet: FakeFleet,
  verifier = new FakeVerifier(),
  keyNames = new FakeParameter(KEY_NAMES_PARAMETER, '{}'),
): { secrets: ReturnType<typeof mockClient>; ssm: ReturnType<typeof mockClient>; lambda: ReturnType<typeof mockClient> } {
  const secrets = mockClient(SecretsManagerClient);
  secrets.on(DescribeSecretCommand).callsFake(() => secret.describe());
  secrets.on(GetSecretValueCommand).callsFake((input) => secret.get(input));
  secrets.on(PutSecretValueCommand).callsFake((input) => secret.put(input));
  secrets.on(UpdateSecretVersionStageCommand).callsFake((input) => secret.update(input));
  secrets.on(UntagResourceCommand).callsFake((input) => secret.untag(input));
  secrets.on(ListSecretVersionIdsCommand).callsFake((input) => secret.listVersionIds(input));
  const ssm = mockRunCommand(fleet.runCommand);
  keyNames.mock(ssm);
  const lambda = mockClient(LambdaClient);
  lambda.on(InvokeCommand).callsFake((input) => ({
    StatusCode: 200,
    Payload: new TextEncoder().encode(JSON.stringify(verifier.answer(JSON.parse(new TextDecoder().decode(input.Payload as Uint8Array))))),
  }));
  return { secrets, ssm, lambda };
}

/** What Secrets Manager puts in the version it labels AWSPENDING for a configuration test: AWS does not say. */
export type ConfigurationTestValue = 'none' | 'a copy of AWSCURRENT';

/**
 * What Secrets Manager does when CloudFormation creates or updates an
 * AWS::SecretsManager::RotationSchedule. With RotateImmediatelyOnUpdate (the default) it rotates
 * at once, running every step. Without it, "Secrets Manager tests the rotation configuration by
 * running the testSecret step of the Lambda rotation function. The test creates an AWSPENDING
 * version of the secret and then removes it."
 * https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-secretsmanager-rotationschedule.html
 * https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_RotateSecret.html (RotateImmediately)
 * Whether that version holds a value is not documented: `pendingValue` picks one, and tests run both.
 * A step that throws fails the deployment of the schedule.
 */
export async function deployRotationSchedule(
  schedule: { RotateImmediatelyOnUpdate?: boolean },
  secret: FakeSecret,
  invoke: (step: string, token: string) => Promise<void>,
  pendingValue: ConfigurationTestValue = 'none',
): Promise<void> {
  const token = secret.startRotation();
  if (schedule.RotateImmediatelyOnUpdate ?? true) {
    for (const step of ['createSecret', 'setSecret', 'testSecret', 'finishSecret']) await invoke(step, token);
    return;
  }
  if (pendingValue === 'a copy of AWSCURRENT') secret.values.set(token, secret.get({ VersionStage: 'AWSCURRENT' }).SecretString);
  try {
    await invoke('testSecret', token);
  } finally {
    secret.update({ VersionStage: 'AWSPENDING', RemoveFromVersionId: token });
    secret.values.delete(token);
  }
}
