import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { currentKey, serializeKeySet, type KeySet } from '../../src/core/keyset.js';
import { startLocalFleet, type FleetNode, type LocalFleet } from '../../src/local/fleet.js';
import { TicketKeyRotationStack } from '../../lib/ticket-key-rotation-stack.js';
import { expectNoMaterial, freshTicket, lineage } from '../support/helpers.js';
import { interpolate } from '../support/run-command-fake.js';
import { writeAwsCliStub, writeStubSecret } from '../support/aws-cli-stub.js';

const SECRET_ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:ticket-keys-AbCdEf';

const synthesized = new Map<string, string>();

/** The document's shell script exactly as the synthesized template carries it, for one node's settings. */
function synthesizedCommand(node: FleetNode): string {
  const cached = synthesized.get(node.name);
  if (cached !== undefined) return cached;
  const app = new App();
  const stack = new TicketKeyRotationStack(app, `Doc${node.name}`, {
    rotation: {
      targetTagKey: 'TicketKeyFleet',
      targetTagValue: 'local',
      keyDirectory: node.keyDir,
      includePath: node.includeFile,
      testCommand: node.testCommand,
      configDumpCommand: node.configDumpCommand,
      reloadCommand: node.reloadCommand,
    },
  });
  const documents = Object.values(Template.fromStack(stack).findResources('AWS::SSM::Document')) as {
    Properties: { Content: { mainSteps: { inputs: { runCommand: string[] } }[] } };
  }[];
  const command = documents[0]!.Properties.Content.mainSteps[0]!.inputs.runCommand.join('\n');
  synthesized.set(node.name, command);
  return command;
}

describe('the synthesized SSM document, run on real nginx nodes with a stub AWS CLI', () => {
  let fleet: LocalFleet;
  let stubDir: string;
  const sets = lineage(2);
  const versions = sets.map(() => randomUUID());
  const outputs: string[] = [];

  beforeAll(async () => {
    fleet = await startLocalFleet({ nodeCount: 2 });
    // The key sets in memory, like the node's own keys.
    stubDir = join(fleet.memoryDir, 'aws-stub');
    writeAwsCliStub(stubDir);
    writeStubSecret(stubDir, { arn: SECRET_ARN, versions: sets.map((set, index) => [versions[index] as string, serializeKeySet(set)]), stages: { AWSCURRENT: versions[0] as string, AWSPENDING: versions[1] as string } });
  });
  afterAll(async () => {
    await fleet?.stop();
    expect(outputs.length).toBeGreaterThan(0);
    expectNoMaterial(outputs.join('\n'), sets);
  });

  const run = (node: FleetNode, parameters: Record<string, string>): { status: number; stdout: string; stderr: string } => {
    const script = join(fleet.baseDir, `${node.name}-${randomUUID()}.sh`);
    writeFileSync(script, interpolate(synthesizedCommand(node), parameters), { mode: 0o700 });
    // As the SSM agent may: with sh, from the system PATH (plus the stub aws).
    const result = spawnSync('sh', [script], {
      encoding: 'utf8',
      env: { PATH: `${stubDir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`, HOME: fleet.baseDir },
    });
    outputs.push(result.stdout, result.stderr);
    return { status: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
  };
  const summary = (stdout: string): Record<string, unknown> => {
    const lines = stdout.split('\n').filter((line) => line !== '');
    expect(lines, 'the command prints exactly the applier summary').toHaveLength(1);
    return JSON.parse(lines[0] as string) as Record<string, unknown>;
  };

  it('applies the requested version, fetched by version id and its stage in the secret\'s region, on every node', async () => {
    for (const node of fleet.nodes) {
      const workers = fleet.workerPids(node);
      const result = run(node, { SecretId: SECRET_ARN, VersionId: versions[1] as string, Action: 'apply' });
      expect(result.status, result.stderr).toBe(0);
      expect(summary(result.stdout)).toMatchObject({ action: 'applied', generation: 2 });
      await fleet.waitForReload(node, workers);
      expect((await freshTicket(node, 'TLSv1.3')).keyName).toBe(currentKey(sets[1] as KeySet).name);
    }
    const calls = readFileSync(join(stubDir, 'calls'), 'utf8');
    expect(calls).toContain(`secretsmanager get-secret-value --region eu-west-1 --secret-id ${SECRET_ARN} --version-id ${versions[1]} --version-stage AWSPENDING --query SecretString --output text`);
  });

  it('applies AWSCURRENT when no version is given (the association), and reports status', () => {
    const node = fleet.nodes[0]!;
    const refused = run(node, { SecretId: SECRET_ARN, VersionId: '', Action: 'apply' });
    // AWSCURRENT is generation 1 while the node serves 2: the applier keeps the newer set.
    expect(refused.status).toBe(4);
    expect(summary(refused.stdout)).toMatchObject({ action: 'refused', exitCode: 4 });
    // A version that is AWSCURRENT by now (an apply that ran after its rotation finished) is read as AWSCURRENT.
    const late = run(node, { SecretId: SECRET_ARN, VersionId: versions[0] as string, Action: 'apply' });
    expect(late.status).toBe(4);
    expect(readFileSync(join(stubDir, 'calls'), 'utf8')).toContain(`--version-id ${versions[0]} --version-stage AWSCURRENT`);
    const status = run(node, { SecretId: SECRET_ARN, VersionId: '', Action: 'status' });
    expect(status.status).toBe(0);
    expect(summary(status.stdout)).toMatchObject({ action: 'active', generation: 2 });
  });

  it('fails with a summary line and a clear message when the key set cannot be fetched', () => {
    const result = run(fleet.nodes[1]!, { SecretId: SECRET_ARN, VersionId: randomUUID(), Action: 'apply' });
    expect(result.status).toBe(10);
    expect(summary(result.stdout)).toMatchObject({ action: 'failed', exitCode: 10, error: expect.stringMatching(/could not fetch the key set from Secrets Manager/) });
    // Neither pending nor current: the second attempt's answer is the one shown.
    expect(result.stderr).toMatch(/InvalidRequestException/);
  });
});
