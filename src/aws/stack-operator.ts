import { randomUUID } from 'node:crypto';
import { DescribeStacksCommand, type CloudFormationClient } from '@aws-sdk/client-cloudformation';
import { FilterLogEventsCommand, type CloudWatchLogsClient } from '@aws-sdk/client-cloudwatch-logs';
import { InvokeCommand, type LambdaClient } from '@aws-sdk/client-lambda';
import { DescribeSecretCommand, RotateSecretCommand, TagResourceCommand, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { SSMClient } from '@aws-sdk/client-ssm';
import type { PublishedKeyNames } from '../core/key-names.js';
import type { NodeStatus } from '../core/rotation.js';
import { AWSCURRENT, AWSPENDING, REVOCATION_TAG } from '../core/secret-store.js';
import type { VerificationReport } from '../verify/verifier.js';
import { readKeyNames } from './key-names-reader.js';
import { SsmFleetCommander } from './ssm-fleet-commander.js';

/** What an operator's command is refused for (no such stack, no region, a bad reason): its message alone. */
export class OperatorError extends Error {}

/** The stack's outputs the operator's commands use (lib/ticket-key-rotation-stack.ts names them). */
export interface StackOutputs {
  SecretArn: string;
  DocumentName?: string;
  KeyNamesParameter?: string;
  VerifierFunctionName?: string;
  RotationLogGroup?: string;
  CommandOutputLogGroup?: string;
  TargetTag?: string;
}

export interface OperatorClients {
  cloudformation: CloudFormationClient;
  secrets: SecretsManagerClient;
  ssm: SSMClient;
  lambda: LambdaClient;
  logs: CloudWatchLogsClient;
}

/** The last rotation step the rotation function logged (one JSON line per step: the audit trail). */
export interface LastStep {
  at: string;
  step: string;
  outcome: string;
  kind?: string;
  generation?: number;
  versionId?: string;
  error?: string;
}

export interface FleetStatus {
  secretArn: string;
  rotationEnabled: boolean;
  lastRotated?: string;
  nextRotation?: string;
  /** The version ids that carry a stage, with their stages. */
  stages: Record<string, string[]>;
  keyNames: PublishedKeyNames;
  /** A pending version that is not (yet) current: a rotation in flight, or one that failed and waits for its retry. */
  inFlight?: string;
  /** What the operator wrote when asking the next rotation to revoke every key. */
  revocationRequested?: string;
  lastStep?: LastStep;
  /** Each tagged node's answer to the status document; absent when the stack gives no document. */
  nodes?: NodeStatus[];
}

/** How far back the rotation log is searched for the last step. */
const LOG_LOOKBACK_MS = 14 * 86_400_000;
/** How long the nodes' status round may take. */
const STATUS_DEADLINE_MS = 5 * 60_000;

/** The operator's commands against a deployed stack: read its state, start a rotation or a revocation, run the verifier. */
export class StackOperator {
  private constructor(
    private readonly clients: OperatorClients,
    readonly outputs: StackOutputs,
    private readonly byStack: boolean,
  ) {}

  /** The stack named `stack` (its outputs), or a secret alone (`secretId`: status and rotate, nothing that needs the stack's other parts). */
  static async open(clients: OperatorClients, target: { stack?: string; secretId?: string }): Promise<StackOperator> {
    if (target.stack === undefined) {
      if (target.secretId === undefined) throw new OperatorError('give --stack NAME (the deployed stack) or --secret-id ARN (its key set secret)');
      return new StackOperator(clients, { SecretArn: target.secretId }, false);
    }
    let outputs: Record<string, string>;
    try {
      const response = await clients.cloudformation.send(new DescribeStacksCommand({ StackName: target.stack }));
      outputs = Object.fromEntries((response.Stacks?.[0]?.Outputs ?? []).map((output) => [output.OutputKey ?? '', output.OutputValue ?? '']));
    } catch (error) {
      // DescribeStacks answers a stack that does not exist with a ValidationError "Stack with id X does not exist".
      if ((error as Error).name === 'ValidationError') throw new OperatorError(`no stack ${target.stack} in this account and region: check --stack and AWS_REGION`);
      throw error;
    }
    if (!outputs.SecretArn) throw new OperatorError(`stack ${target.stack} has no SecretArn output: is it a ticket key rotation stack?`);
    return new StackOperator(clients, outputs as unknown as StackOutputs, true);
  }

  private need(name: keyof StackOutputs): string {
    const value = this.outputs[name];
    if (value !== undefined && value !== '') return value;
    if (this.byStack) throw new OperatorError(`the stack has no ${name} output: deploy this version of it${name === 'TargetTag' || name === 'CommandOutputLogGroup' ? ', or pass --skip-nodes' : ''}`);
    throw new OperatorError(`this needs the stack's ${name} output: give --stack NAME rather than --secret-id`);
  }

  async status(options: { nodes: boolean }): Promise<FleetStatus> {
    const secret = await this.clients.secrets.send(new DescribeSecretCommand({ SecretId: this.outputs.SecretArn }));
    const stages = Object.fromEntries(Object.entries(secret.VersionIdsToStages ?? {}).filter(([, labels]) => labels.length > 0));
    const inFlight = Object.entries(stages).find(([, labels]) => labels.includes(AWSPENDING) && !labels.includes(AWSCURRENT))?.[0];
    const revocation = secret.Tags?.find((tag) => tag.Key === REVOCATION_TAG);
    const status: FleetStatus = {
      secretArn: this.outputs.SecretArn,
      rotationEnabled: secret.RotationEnabled === true,
      stages,
      keyNames: this.outputs.KeyNamesParameter ? await readKeyNames(this.clients.ssm, this.outputs.KeyNamesParameter) : {},
      ...(secret.LastRotatedDate ? { lastRotated: secret.LastRotatedDate.toISOString() } : {}),
      ...(secret.NextRotationDate ? { nextRotation: secret.NextRotationDate.toISOString() } : {}),
      ...(inFlight ? { inFlight } : {}),
      ...(revocation ? { revocationRequested: revocation.Value ?? '' } : {}),
    };
    const lastStep = this.outputs.RotationLogGroup ? await this.lastStep(this.outputs.RotationLogGroup) : undefined;
    if (lastStep) status.lastStep = lastStep;
    if (options.nodes && this.outputs.DocumentName) status.nodes = await this.nodeStatuses();
    return status;
  }

  private async lastStep(logGroup: string): Promise<LastStep | undefined> {
    let last: LastStep | undefined;
    let nextToken: string | undefined;
    do {
      const page = await this.clients.logs.send(
        new FilterLogEventsCommand({ logGroupName: logGroup, startTime: Date.now() - LOG_LOOKBACK_MS, filterPattern: '{ $.message = "rotation step" }', ...(nextToken ? { nextToken } : {}) }),
      );
      for (const event of page.events ?? []) {
        try {
          const line = JSON.parse(event.message ?? '') as Record<string, unknown>;
          last = {
            at: new Date(event.timestamp ?? 0).toISOString(),
            step: String(line.step),
            outcome: String(line.outcome),
            ...(typeof line.kind === 'string' ? { kind: line.kind } : {}),
            ...(typeof line.generation === 'number' ? { generation: line.generation } : {}),
            ...(typeof line.versionId === 'string' ? { versionId: line.versionId } : {}),
            ...(typeof line.error === 'string' ? { error: line.error } : {}),
          };
        } catch {
          // not one of the function's JSON lines
        }
      }
      nextToken = page.nextToken;
    } while (nextToken);
    return last;
  }

  private async nodeStatuses(): Promise<NodeStatus[]> {
    const tag = this.need('TargetTag');
    const split = tag.indexOf('=');
    const commander = new SsmFleetCommander(this.clients.ssm, {
      documentName: this.need('DocumentName'),
      secretArn: this.outputs.SecretArn,
      tagKey: tag.slice(0, split),
      tagValue: tag.slice(split + 1),
      maxConcurrency: '50',
      maxErrors: '100%',
      outputLogGroup: this.need('CommandOutputLogGroup'),
      deadline: Date.now() + STATUS_DEADLINE_MS,
      requester: 'ticket-keys status',
    });
    return commander.status();
  }

  /** Starts a rotation, as "Rotate secret immediately" does; its steps then run in the rotation function. */
  async rotate(): Promise<string> {
    const response = await this.clients.secrets.send(new RotateSecretCommand({ SecretId: this.outputs.SecretArn, ClientRequestToken: randomUUID() }));
    return response.VersionId ?? '';
  }

  /**
   * Asks for a revocation the way the console path does (the RevokeTicketKeys tag, its value
   * who and why), then starts the rotation that carries it out.
   */
  async revoke(reason: string): Promise<string> {
    // Tag values: up to 256 characters of letters, digits, spaces and _ . : / = + - @
    // (https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_TagResource.html).
    if (!/^[\p{L}\p{Z}\p{N}_.:/=+\-@]{1,256}$/u.test(reason)) {
      throw new OperatorError('--reason must be 1 to 256 letters, digits, spaces or _ . : / = + - @ (a tag value): say who and why, like "alice: INC-4711"');
    }
    await this.clients.secrets.send(new TagResourceCommand({ SecretId: this.outputs.SecretArn, Tags: [{ Key: REVOCATION_TAG, Value: reason }] }));
    try {
      return await this.rotate();
    } catch (error) {
      throw new OperatorError(
        `the revocation is requested (the secret carries the ${REVOCATION_TAG} tag), but starting its rotation failed: ${(error as Error).name}: ${(error as Error).message}; the next rotation revokes: start it with \`ticket-keys rotate\` once that is fixed`,
      );
    }
  }

  /** Runs the verifier function's canary against AWSCURRENT's key, and returns its report (or why it skipped). */
  async verify(): Promise<VerificationReport | { skipped: string }> {
    const response = await this.clients.lambda.send(
      new InvokeCommand({ FunctionName: this.need('VerifierFunctionName'), Payload: new TextEncoder().encode(JSON.stringify({ action: 'canary' })) }),
    );
    const payload = new TextDecoder().decode(response.Payload ?? new Uint8Array());
    if (response.FunctionError !== undefined) {
      const message = (JSON.parse(payload || '{}') as { errorMessage?: string }).errorMessage ?? response.FunctionError;
      throw new OperatorError(`the verifier function failed: ${message}`);
    }
    return JSON.parse(payload) as VerificationReport | { skipped: string };
  }
}
