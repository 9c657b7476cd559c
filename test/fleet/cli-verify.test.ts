import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { currentKey, nextKey, serializeKeySet, type KeySet } from '../../src/core/keyset.js';
import { startLocalFleet, type LocalFleet } from '../../src/local/fleet.js';
import { applyToAll, lineage } from '../support/helpers.js';

const CLI = join(import.meta.dirname, '..', '..', 'dist', 'src', 'cli.js');

function cli(args: string[]): { status: number; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}

describe('ticket-keys verify against a real fleet', () => {
  let fleet: LocalFleet;
  let nodeArgs: string[];
  const [set] = lineage(1) as [KeySet];

  beforeAll(async () => {
    fleet = await startLocalFleet({ nodeCount: 3 });
    await applyToAll(fleet, set);
    nodeArgs = fleet.nodes.flatMap((node) => ['--node', `${node.host}:${node.port}`]);
  });
  afterAll(async () => {
    await fleet?.stop();
  });

  it('passes with exit 0 and a table, the expected key taken from a key set file', () => {
    const file = join(fleet.memoryDir, 'keys.json');
    writeFileSync(file, serializeKeySet(set), { mode: 0o600 });
    const result = cli(['verify', ...nodeArgs, '--key-set', file]);
    expect(result.status, result.stdout + result.stderr).toBe(0);
    expect(result.stdout).toMatch(new RegExp(`expected key: ${currentKey(set).name}\\n`));
    expect(result.stdout).toMatch(/cross-node resumption: 12\/12[\s\S]*PASS/);
    expect(result.stdout).not.toContain(set.keys[0]!.material.slice(0, 20));
  });

  it('fails with exit 1 and JSON naming every node when they do not use the expected key', () => {
    const nodesFile = join(fleet.baseDir, 'nodes.txt');
    writeFileSync(nodesFile, `# the fleet\n${fleet.nodes.map((node) => `${node.host}:${node.port}`).join('\n')}\n`);
    const result = cli(['verify', '--nodes-file', nodesFile, '--expect-key', nextKey(set).name, '--json', '--tls', '1.3']);
    expect(result.status).toBe(1);
    const report = JSON.parse(result.stdout) as { ok: boolean; failures: { kind: string; subject: string }[] };
    expect(report.ok).toBe(false);
    expect(report.failures.map((failure) => `${failure.kind}: ${failure.subject}`).sort()).toEqual(
      fleet.nodes.map((node) => `wrong key: ${node.host}:${node.port}`).sort(),
    );
  });

  it('answers bad arguments with exit 2', () => {
    expect(cli(['verify']).stderr).toMatch(/verify needs nodes/);
    expect(cli(['verify', '--node', 'nowhere']).stderr).toMatch(/node "nowhere" is not \[NAME=\]HOST:PORT/);
    expect(cli(['verify', ...nodeArgs, '--tls', '1.1']).status).toBe(2);
    expect(cli(['verify', ...nodeArgs, '--expect-key', 'abc']).stderr).toMatch(/not a key name/);
  });
});
