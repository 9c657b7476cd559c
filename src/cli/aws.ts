import { CloudFormationClient } from '@aws-sdk/client-cloudformation';
import { CloudWatchLogsClient } from '@aws-sdk/client-cloudwatch-logs';
import { LambdaClient } from '@aws-sdk/client-lambda';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SSMClient } from '@aws-sdk/client-ssm';
import type { VersionKeyNames } from '../core/key-names.js';
import { AWS_CLIENT_CONFIG, VERIFIER_INVOKE_CLIENT_CONFIG } from '../aws/clients.js';
import { OperatorError, StackOperator, type FleetStatus } from '../aws/stack-operator.js';
import { formatReport } from '../verify/verifier.js';
import { UsageError, type OptionSpecs, type OptionValues } from './options.js';

export const STACK_OPTIONS = {
  stack: { kind: 'string', value: 'NAME', help: 'the deployed stack (AWS credentials and region from the environment or AWS_PROFILE)' },
  'secret-id': { kind: 'string', value: 'ARN', help: 'its key set secret, when the stack is not at hand' },
} as const satisfies OptionSpecs;

/** Whether the command is meant for a deployed stack. */
export function onAws(values: OptionValues<typeof STACK_OPTIONS>): boolean {
  return values.stack !== undefined || values['secret-id'] !== undefined;
}

/** Says which of `values` a command on a stack does not take. */
export function refuseLocalOptions(command: string, values: Record<string, unknown>, local: readonly string[]): void {
  const given = local.filter((name) => values[name] !== undefined);
  if (given.length > 0) {
    throw new UsageError(`${command} --stack takes no ${given.map((name) => `--${name}`).join(', ')}: those are for key set files; see \`ticket-keys ${command} --help\``);
  }
}

/**
 * The stack, with clients in the environment's region and credentials. A missing region or
 * missing credentials is said in one line with what to set, before anything is sent.
 */
async function operator(values: OptionValues<typeof STACK_OPTIONS>): Promise<StackOperator> {
  if (values.stack !== undefined && values['secret-id'] !== undefined) throw new UsageError('give --stack or --secret-id, not both: the stack names its secret');
  const secrets = new SecretsManagerClient(AWS_CLIENT_CONFIG);
  try {
    await secrets.config.region();
  } catch {
    throw new OperatorError('no AWS region: set AWS_REGION (or AWS_PROFILE, with a region in its profile)');
  }
  try {
    await secrets.config.credentials();
  } catch (error) {
    const why = process.env.AWS_PROFILE ? ` (profile ${process.env.AWS_PROFILE}: ${(error as Error).message})` : '';
    throw new OperatorError(`no AWS credentials${why}: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run where an instance or task role gives them`);
  }
  const clients = {
    cloudformation: new CloudFormationClient(AWS_CLIENT_CONFIG),
    secrets,
    ssm: new SSMClient(AWS_CLIENT_CONFIG),
    lambda: new LambdaClient(VERIFIER_INVOKE_CLIENT_CONFIG),
    logs: new CloudWatchLogsClient(AWS_CLIENT_CONFIG),
  };
  return StackOperator.open(clients, { ...(values.stack !== undefined ? { stack: values.stack } : {}), ...(values['secret-id'] !== undefined ? { secretId: values['secret-id'] } : {}) });
}

const describeVersion = (names: VersionKeyNames | undefined): string =>
  names === undefined ? 'none' : `generation ${names.generation}, current key ${names.currentKey} (version ${names.versionId})`;

export function formatStatus(status: FleetStatus): string {
  const rows: [string, string][] = [
    ['secret', status.secretArn],
    [
      'AWSCURRENT',
      status.keyNames.current !== undefined ? describeVersion(status.keyNames.current) : (Object.entries(status.stages).find(([, stages]) => stages.includes('AWSCURRENT'))?.[0] ?? 'none'),
    ],
    [
      'in flight',
      status.inFlight === undefined
        ? 'no rotation'
        : `version ${status.inFlight}${status.keyNames.pending?.versionId === status.inFlight ? `, ${describeVersion(status.keyNames.pending)}` : ''}: rolling out, or failed and waiting for its retry`,
    ],
    ['rotation', `${status.rotationEnabled ? 'on' : 'OFF'}; last rotated ${status.lastRotated ?? 'never'}; next ${status.nextRotation ?? 'not scheduled by Secrets Manager'}`],
    [
      'last step',
      status.lastStep === undefined
        ? 'none logged in the last 14 days'
        : `${status.lastStep.step} ${status.lastStep.outcome}${status.lastStep.kind ? ` (${status.lastStep.kind})` : ''}${status.lastStep.generation !== undefined ? `, generation ${status.lastStep.generation}` : ''} at ${status.lastStep.at}${status.lastStep.error ? `: ${status.lastStep.error}` : ''}`,
    ],
    ['revocation', status.revocationRequested === undefined ? 'not requested' : `requested (${JSON.stringify(status.revocationRequested)}): the next rotation replaces every key`],
  ];
  const lines = rows.map(([label, text]) => `${label.padEnd(11)} ${text}`);
  if (status.nodes !== undefined) {
    lines.push(`nodes       ${status.nodes.length} tagged`);
    for (const node of status.nodes) {
      const what = node.skipped !== undefined ? `skipped: ${node.skipped}` : node.error !== undefined ? `FAILED: ${node.error}` : node.generation !== undefined ? `generation ${node.generation}` : 'no key set';
      lines.push(`  ${node.node.padEnd(22)} ${what}`);
    }
  }
  return lines.join('\n');
}

export async function awsStatus(values: OptionValues<typeof STACK_OPTIONS> & { json?: boolean; 'skip-nodes'?: boolean }): Promise<number> {
  const status = await (await operator(values)).status({ nodes: values['skip-nodes'] !== true });
  process.stdout.write(`${values.json ? JSON.stringify(status, null, 2) : formatStatus(status)}\n`);
  return 0;
}

export async function awsRotate(values: OptionValues<typeof STACK_OPTIONS>): Promise<number> {
  const versionId = await (await operator(values)).rotate();
  process.stderr.write(`ticket-keys: rotation started: version ${versionId}; follow it with \`ticket-keys status ${values.stack ? `--stack ${values.stack}` : `--secret-id ${values['secret-id']}`}\`\n`);
  return 0;
}

export async function awsRevoke(values: OptionValues<typeof STACK_OPTIONS> & { reason?: string }): Promise<number> {
  if (values.reason === undefined) throw new UsageError('revoke --stack needs --reason TEXT: who asks and why, kept on the secret and in the audit log');
  const versionId = await (await operator(values)).revoke(values.reason);
  process.stderr.write(`ticket-keys: revocation requested and started: version ${versionId} replaces every key; follow it with \`ticket-keys status ${values.stack ? `--stack ${values.stack}` : `--secret-id ${values['secret-id']}`}\`\n`);
  return 0;
}

export async function awsVerify(values: OptionValues<typeof STACK_OPTIONS> & { json?: boolean }): Promise<number> {
  const result = await (await operator(values)).verify();
  if ('skipped' in result) {
    process.stdout.write(`${values.json ? JSON.stringify(result, null, 2) : `skipped: ${result.skipped}`}\n`);
    return 0;
  }
  process.stdout.write(`${values.json ? JSON.stringify(result, null, 2) : formatReport(result)}\n`);
  return result.ok ? 0 : 1;
}
