import { execFileSync } from 'node:child_process';
import { appendFileSync, existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { currentKey, parseKeySet, serializeKeySet, type KeySet } from '../../src/core/keyset.js';
import { nodeApplierArgs, runApplier, type ApplierRun } from '../../src/local/applier.js';
import { APPLIER_PATH } from '../../src/project-paths.js';
import { startLocalFleet, type FleetNode, type LocalFleet } from '../../src/local/fleet.js';
import { applyTo, expectNoMaterial, freshTicket, lineage } from '../support/helpers.js';
import { malformedKeySets } from '../support/malformed-key-sets.js';

/** Every file under the node's config and key directories, with its mode and bytes. */
function snapshot(node: FleetNode): Map<string, string> {
  const files = new Map<string, string>();
  const walk = (dir: string): void => {
    if (!existsSync(dir)) return;
    for (const entry of readdirSync(dir)) {
      const path = join(dir, entry);
      const stat = statSync(path);
      if (stat.isDirectory()) walk(path);
      else files.set(path, `${stat.mode.toString(8)}:${readFileSync(path).toString('base64')}`);
    }
  };
  walk(join(node.prefix, 'conf'));
  walk(node.keyDir);
  return files;
}

describe('the node applier on a real nginx node', () => {
  let fleet: LocalFleet;
  let node: FleetNode;
  const sets = lineage(3);
  const [gen1, gen2, gen3] = sets as [KeySet, KeySet, KeySet];
  const otherLineage = lineage(2);
  const outputs: string[] = [];

  const apply = async (set: KeySet | string, extraArgs: string[] = []): Promise<ApplierRun> => {
    const run = await applyTo(fleet, node, set, extraArgs);
    outputs.push(run.stdout, run.stderr);
    return run;
  };

  beforeAll(async () => {
    fleet = await startLocalFleet({ nodeCount: 1 });
    node = fleet.nodes[0] as FleetNode;
  });
  afterAll(async () => {
    await fleet?.stop();
    // Every line any applier run printed, on every path, is free of key material.
    expect(outputs.length).toBeGreaterThan(20);
    expectNoMaterial(outputs.join('\n'), [...sets, ...otherLineage]);
  });
  beforeEach(async () => {
    const run = await apply(gen1, ['--allow-downgrade']);
    expect(run.exitCode, run.stderr).toBe(0);
  });

  it('applies a generation: key files 0600 in a 0700 directory, the include lists them current first, one summary line', async () => {
    const run = await apply(gen2);
    expect(run.exitCode).toBe(0);
    expect(run.summary).toMatchObject({ action: 'applied', generation: 2, previousGeneration: 1, keys: gen2.keys.map((key) => key.name) });
    expect(statSync(node.keyDir).mode & 0o777).toBe(0o700);
    const include = readFileSync(node.includeFile, 'utf8');
    const paths = [...include.matchAll(/^ssl_session_ticket_key (.+);$/gm)].map((match) => match[1] as string);
    expect(paths.map((path) => readFileSync(path).subarray(0, 16).toString('hex'))).toEqual(gen2.keys.map((key) => key.name));
    for (const path of paths) expect(statSync(path).mode & 0o777).toBe(0o600);
    expect((await freshTicket(node, 'TLSv1.3')).keyName).toBe(currentKey(gen2).name);
    expect(readdirSync(node.keyDir).filter((entry) => entry.startsWith('gen-'))).toHaveLength(1);
  });

  it('does nothing when the generation is already active: no reload, the same nginx workers', async () => {
    const workers = fleet.workerPids(node);
    const before = snapshot(node);
    const run = await apply(gen1);
    expect(run.exitCode).toBe(0);
    expect(run.summary.action).toBe('unchanged');
    expect(fleet.workerPids(node)).toEqual(workers);
    expect(snapshot(node)).toEqual(before);
  });

  it('knows its key directory however it is spelled, and keeps the active generation', async () => {
    const before = snapshot(node);
    const spelled = `${node.keyDir}/./`;
    const run = await apply(gen1, ['--key-dir', spelled]);
    expect(run.summary.action).toBe('unchanged');
    expect(snapshot(node)).toEqual(before);
    expect((await apply(gen2, ['--key-dir', spelled])).exitCode).toBe(0);
    expect((await freshTicket(node, 'TLSv1.2')).keyName).toBe(currentKey(gen2).name);
    expect((await apply(gen2)).summary.action).toBe('unchanged');
  });

  it('reads the key set from --input FILE as well as from standard input', async () => {
    const file = join(fleet.memoryDir, 'gen2.json');
    writeFileSync(file, serializeKeySet(gen2), { mode: 0o600 });
    const run = await apply('', ['--input', file]);
    expect(run.summary).toMatchObject({ action: 'applied', generation: 2 });
    const missing = await apply('', ['--input', join(fleet.baseDir, 'absent.json')]);
    expect(missing.exitCode).toBe(2);
    expect(missing.summary.error).toMatch(/cannot read --input .*absent\.json/);
  });

  it('reports the active generation with --status and changes nothing', async () => {
    const before = snapshot(node);
    const run = await runApplier([...nodeApplierArgs(node), '--status']);
    outputs.push(run.stdout, run.stderr);
    expect(run.summary).toMatchObject({ action: 'active', generation: 1, keys: gen1.keys.map((key) => key.name) });
    expect(snapshot(node)).toEqual(before);
  });

  const malformed = malformedKeySets(gen2);

  it(`refuses ${malformed.length} malformed key sets, each with its own message, touching nothing`, async () => {
    const before = snapshot(node);
    const workers = fleet.workerPids(node);
    const messages = new Set<string>();
    for (const [what, make, message] of malformed) {
      const input = make();
      const run = await apply(input);
      expect(run.exitCode, what).toBe(3);
      expect(run.summary.action, what).toBe('refused');
      expect(run.summary.error, what).toMatch(message);
      expect(run.stderr, what).toMatch(message);
      messages.add(run.summary.error as string);
      // The engine refuses the same documents.
      expect(() => parseKeySet(input), what).toThrow(message);
      expect(snapshot(node), what).toEqual(before);
    }
    // One message per kind of refusal: a JSON array and a JSON string share theirs.
    expect(messages.size).toBe(new Set(malformed.map(([, , message]) => message.source)).size);
    expect(fleet.workerPids(node)).toEqual(workers);
    expect((await freshTicket(node, 'TLSv1.2')).keyName).toBe(currentKey(gen1).name);
  });

  it('refuses an older generation, and the same generation with other keys, touching nothing', async () => {
    expect((await apply(gen2)).exitCode).toBe(0);
    const before = snapshot(node);
    const older = await apply(gen1);
    expect(older.exitCode).toBe(4);
    expect(older.summary.error).toMatch(/generation 1 is older than the active generation 2.*--allow-downgrade/);
    const rival = await apply(otherLineage[1] as KeySet);
    expect(rival.exitCode).toBe(4);
    expect(rival.summary.error).toMatch(/generation 2 is already active with other keys/);
    expect(snapshot(node)).toEqual(before);
    expect((await freshTicket(node, 'TLSv1.3')).keyName).toBe(currentKey(gen2).name);
  });

  it('restores the previous set when the config test fails, and says so', async () => {
    const config = readFileSync(node.configFile, 'utf8');
    const before = snapshot(node);
    appendFileSync(node.configFile, '\nthis_is_not_a_directive;\n');
    const workers = fleet.workerPids(node);
    try {
      const run = await apply(gen2);
      expect(run.exitCode).toBe(5);
      expect(run.summary.action).toBe('restored');
      expect(run.summary.error).toMatch(/config test .* failed: .*unknown directive "this_is_not_a_directive".*previous key set was restored/);
    } finally {
      writeFileSync(node.configFile, config);
    }
    expect(snapshot(node)).toEqual(before);
    expect(fleet.workerPids(node)).toEqual(workers);
    expect((await freshTicket(node, 'TLSv1.2')).keyName).toBe(currentKey(gen1).name);
    expect((await apply(gen2)).exitCode).toBe(0);
  });

  it('restores and reloads the previous set when the reload fails', async () => {
    const before = snapshot(node);
    const marker = join(fleet.baseDir, 'reload-failed-once');
    const flakyReload = `if [ -e ${marker} ]; then ${node.reloadCommand}; else touch ${marker}; echo 'reload refused' >&2; exit 1; fi`;
    const run = await apply(gen2, ['--reload-cmd', flakyReload]);
    expect(run.exitCode).toBe(6);
    expect(run.summary.action).toBe('restored');
    expect(run.summary.error).toMatch(/reload .* failed: reload refused; the previous key set was restored and reloaded/);
    expect(snapshot(node)).toEqual(before);
    expect((await freshTicket(node, 'TLSv1.3')).keyName).toBe(currentKey(gen1).name);
  });

  it('heals on the next run after a crash left a staged generation and temp files behind', async () => {
    const stale = join(node.keyDir, 'gen-9.crashed');
    execFileSync('mkdir', ['-m', '700', stale]);
    writeFileSync(join(stale, '00-x.key'), 'partial', { mode: 0o600 });
    writeFileSync(join(node.keyDir, '.ticket-keys.conf.tmp.abc'), 'partial');
    const run = await apply(gen3);
    expect(run.exitCode).toBe(0);
    expect(existsSync(stale)).toBe(false);
    expect(existsSync(join(node.keyDir, '.ticket-keys.conf.tmp.abc'))).toBe(false);
    expect((await freshTicket(node, 'TLSv1.2')).keyName).toBe(currentKey(gen3).name);
  });

  it('answers usage errors with exit 2 and a summary line', async () => {
    const missing = await runApplier(['--include', node.includeFile], serializeKeySet(gen2));
    expect(missing.exitCode).toBe(2);
    expect(missing.summary.error).toMatch(/--key-dir is required/);
    const flavor = await runApplier([...nodeApplierArgs(node), '--flavor', 'caddy'], serializeKeySet(gen2));
    expect(flavor.exitCode).toBe(2);
    expect(flavor.summary.error).toMatch(/flavor caddy is not supported/);
    outputs.push(missing.stdout, missing.stderr, flavor.stdout, flavor.stderr);
  });

  it('is shellcheck-clean', () => {
    let output = '';
    try {
      output = execFileSync('shellcheck', ['--version'], { encoding: 'utf8' });
    } catch {
      throw new Error('shellcheck is not installed: apt-get install shellcheck (.ci/run does this)');
    }
    expect(output).toMatch(/version/);
    expect(execFileSync('shellcheck', [APPLIER_PATH], { encoding: 'utf8' })).toBe('');
  });
});
