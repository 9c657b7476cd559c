import { randomUUID } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync, statfsSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { currentKey, parseKeySet, serializeKeySet, type KeySet } from '../../src/core/keyset.js';
import { DEFAULT_ROTATION_INTERVAL_SECONDS, DEFAULT_TICKET_LIFETIME_SECONDS } from '../../src/core/policy.js';
import { rotateNow, type RotationContext } from '../../src/core/rotation.js';
import { AWSCURRENT } from '../../src/core/secret-store.js';
import { nodeApplierArgs, runApplier } from '../../src/local/applier.js';
import { FileSecretStore } from '../../src/local/file-secret-store.js';
import { startLocalFleet, type LocalFleet } from '../../src/local/fleet.js';
import { LocalFleetCommander } from '../../src/local/local-fleet-commander.js';
import { LocalFleetVerifier } from '../../src/local/local-fleet-verifier.js';
import { captureTickets, verifyFleet, type VerificationReport } from '../../src/verify/verifier.js';
import { applyTo, expectNoMaterial, freshTicket, managedInclude, olderSet, resumes } from '../support/helpers.js';

const TMPFS_MAGIC = 0x01021994;

/** Every file under `dir` (following nothing), for the search for key bytes. */
function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile())
    .map((entry) => join(entry.parentPath, entry.name));
}

/** Each key's raw bytes and their base64 and hex forms, searched for in every file under `dirs`. */
function keyBytesOnDisk(sets: KeySet[], dirs: string[]): string[] {
  const needles = sets.flatMap((set) =>
    set.keys.flatMap((key) => {
      const raw = Buffer.from(key.material, 'base64');
      return [raw, Buffer.from(key.material), Buffer.from(raw.toString('hex'))];
    }),
  );
  return dirs.flatMap(filesUnder).filter((file) => {
    const content = readFileSync(file);
    return needles.some((needle) => content.includes(needle));
  });
}

describe('the node lifecycle on real nginx: keys in memory, restarts, late nodes, missed rotations, revocation', () => {
  let fleet: LocalFleet;
  let store: FileSecretStore;
  let commander: LocalFleetCommander;
  let context: RotationContext<VerificationReport>;
  const outputs: string[] = [];
  const timings: string[] = [];

  const current = async (): Promise<KeySet> => parseKeySet((await store.getVersion({ stage: AWSCURRENT }))!.value);
  const rotate = async (): Promise<KeySet> => (await rotateNow(context, randomUUID())).keySet;
  const verifyAll = async (expected: KeySet) => {
    const report = await verifyFleet(fleet.runningNodes(), { expectedKey: currentKey(expected).name });
    outputs.push(JSON.stringify(report));
    return report;
  };
  const allSets = async (): Promise<KeySet[]> => {
    const stages = await store.versionStages();
    return Promise.all(Object.keys(stages).map(async (versionId) => parseKeySet((await store.getVersion({ versionId }))!.value)));
  };

  beforeAll(async () => {
    fleet = await startLocalFleet({ nodeCount: 3 });
    store = fleet.store;
    commander = new LocalFleetCommander(fleet, store, { maxDelayMs: 100 });
    context = {
      store,
      commander,
      verifier: new LocalFleetVerifier(() => fleet.runningNodes()),
      policy: { rotationIntervalSeconds: DEFAULT_ROTATION_INTERVAL_SECONDS, ticketLifetimeSeconds: DEFAULT_TICKET_LIFETIME_SECONDS, keyLength: 80 },
    };
    await rotate();
  });

  afterAll(async () => {
    try {
      const sets = await allSets();
      expectNoMaterial(outputs.join('\n'), sets);
      // The search finds keys where they are (memory), and none in the persistent places this
      // project writes to: the fleet's configs and logs, and the temp directory.
      expect(keyBytesOnDisk(sets, [fleet.memoryDir]).length).toBeGreaterThan(0);
      expect(keyBytesOnDisk(sets, [fleet.baseDir, ...readdirSync(tmpdir()).filter((name) => name.startsWith('ticket-')).map((name) => join(tmpdir(), name))])).toEqual([]);
      console.log(`convergence times: ${timings.join('; ')}`);
    } finally {
      await fleet.stop();
    }
  });

  it('keeps the keys on a memory filesystem by default, and the summary says so', async () => {
    const node = fleet.nodes[0]!;
    expect(statfsSync(node.keyDir).type).toBe(TMPFS_MAGIC);
    const run = await applyTo(fleet, node, await current());
    outputs.push(run.stdout, run.stderr);
    expect(run.exitCode).toBe(0);
    expect(run.summary).toMatchObject({ keyStorage: 'tmpfs', keysInMemory: true });
    expect(readFileSync(node.configFile, 'utf8')).toContain(managedInclude(node));
  });

  it('refuses a key directory on a persistent filesystem, touching nothing, unless asked to accept it', async () => {
    const node = fleet.nodes[1]!;
    const set = await current();
    const onDisk = join(fleet.baseDir, 'keys-on-disk');
    const before = readFileSync(node.includeFile, 'utf8');
    const workers = fleet.workerPids(node);
    const args = nodeApplierArgs(node);
    args[args.indexOf('--key-dir') + 1] = onDisk;
    const refused = await runApplier(args, serializeKeySet(set));
    outputs.push(refused.stdout, refused.stderr);
    expect(refused.exitCode).toBe(2);
    expect(refused.summary.error).toMatch(/--key-dir .*keys-on-disk is on \S+, a persistent filesystem: keys there outlive their rotation in backups and snapshots; use a directory on tmpfs .* or pass --allow-persistent-key-dir/);
    expect(refused.summary.keysInMemory).toBe(false);
    expect(existsSync(onDisk)).toBe(false);
    expect(readFileSync(node.includeFile, 'utf8')).toBe(before);

    const accepted = await runApplier([...args, '--allow-persistent-key-dir'], serializeKeySet(set));
    outputs.push(accepted.stdout, accepted.stderr);
    expect(accepted.exitCode, accepted.stderr).toBe(0);
    expect(accepted.summary.keysInMemory).toBe(false);
    await fleet.waitForReload(node, workers);
    // Back to memory, and nothing left on disk (the search after all tests checks it too).
    rmSync(onDisk, { recursive: true, force: true });
    const back = await applyTo(fleet, node, set);
    expect(back.exitCode, back.stderr).toBe(0);
    expect((await freshTicket(node, 'TLSv1.2')).keyName).toBe(currentKey(set).name);
  });

  it('fails the apply with exit 9 when the server config does not load the managed keys, and restores the include', async () => {
    const node = fleet.nodes[2]!;
    const config = readFileSync(node.configFile, 'utf8');
    writeFileSync(node.configFile, config.replace(managedInclude(node), '# the include was removed'));
    try {
      const includeBefore = readFileSync(node.includeFile, 'utf8');
      const workers = fleet.workerPids(node);
      const set = await rotate().catch(() => undefined);
      expect(set, 'the rotation must fail while a node does not load the keys').toBeUndefined();
      const pending = await store.versionStages();
      const pendingId = Object.keys(pending).find((id) => pending[id]!.includes('AWSPENDING'))!;
      const run = await applyTo(fleet, node, (await store.getVersion({ versionId: pendingId }))!.value);
      outputs.push(run.stdout, run.stderr);
      expect(run.exitCode).toBe(9);
      expect(run.summary.action).toBe('restored');
      expect(run.summary.error).toMatch(
        new RegExp(`the server's config does not load the managed keys \\(${node.includeFile}\\): keys written there would never be used; add \`${managedInclude(node).replace(/[[\]]/g, '\\$&')}\` to each server block that terminates TLS`),
      );
      expect(readFileSync(node.includeFile, 'utf8')).toBe(includeBefore);
      expect(fleet.workerPids(node)).toEqual(workers);
    } finally {
      writeFileSync(node.configFile, config);
    }
    // The pending version carries over: the next attempt finishes the rotation.
    await rotate();
    expect((await verifyAll(await current())).ok).toBe(true);
  });

  it('a node restarted with its key directory emptied (a reboot) starts on the current set, with no association run', async () => {
    const set = await rotate();
    const node = fleet.nodes[0]!;
    await fleet.stopNode(node);
    rmSync(node.keyDir, { recursive: true, force: true });
    const started = Date.now();
    expect(await fleet.startNode(node)).toMatchObject({ keySource: 'store', generation: set.generation });
    expect((await freshTicket(node, 'TLSv1.3')).keyName).toBe(currentKey(set).name);
    const report = await verifyAll(set);
    timings.push(`rebooted node ${Date.now() - started} ms`);
    expect(report.failures).toEqual([]);
    expect(statSync(node.keyDir).mode & 0o777).toBe(0o700);
  });

  it('a node that was down during two rotations is left out of them, then starts on the current set', async () => {
    const node = fleet.nodes[1]!;
    await fleet.stopNode(node);
    await rotate();
    const set = await rotate();
    const started = Date.now();
    expect(await fleet.startNode(node)).toMatchObject({ keySource: 'store', generation: set.generation });
    // The association finds nothing left to do.
    expect(await commander.applyCurrent(node)).toMatchObject({ ok: true, generation: set.generation, action: 'unchanged' });
    const report = await verifyAll(set);
    timings.push(`node down for 2 rotations ${Date.now() - started} ms`);
    expect(report.failures).toEqual([]);
  });

  it('a node added after several rotations starts on the current set', async () => {
    const set = await rotate();
    const started = Date.now();
    const node = await fleet.addNode();
    expect((await freshTicket(node, 'TLSv1.2')).keyName).toBe(currentKey(set).name);
    const report = await verifyAll(set);
    timings.push(`late node ${Date.now() - started} ms`);
    expect(report.failures).toEqual([]);
    expect(report.pairs).toEqual({ tried: 24, resumed: 24 });
    // It is behind the load balancer too: the next rotation includes it.
    const next = await rotate();
    expect((await verifyAll(next)).nodes.map((entry) => entry.onExpectedKey)).toEqual([true, true, true, true]);
  });

  it('revokes end to end: the gate relaxed on purpose, tickets from before resume on no node, tickets after on every node', async () => {
    const before = await rotate();
    const previous = await olderSet(store, before);
    const lagging = fleet.nodes[0]!;
    expect((await applyTo(fleet, lagging, previous, ['--allow-downgrade'])).exitCode).toBe(0);
    await expect(rotate()).rejects.toThrow(/gate closed: node1 \(generation \d+\) below the current generation/);
    const stolen = await captureTickets(fleet.runningNodes());
    expect(stolen).toHaveLength(fleet.nodes.length * 2);

    store.requestRevocation('alice: INC-42, key found in a core dump');
    const outcome = await rotateNow(context, randomUUID());
    const old = new Set([...before.keys, ...previous.keys].map((key) => key.name));
    expect(outcome.keySet.keys.some((key) => old.has(key.name))).toBe(false);
    expect(outcome.keySet.keys).toHaveLength(2);
    expect(outcome.results.every((result) => result.ok && result.generation === outcome.keySet.generation)).toBe(true);
    const report = outcome.verification!;
    outputs.push(JSON.stringify(report));
    expect(report.revocation).toEqual({ tried: stolen.length * fleet.nodes.length, refused: stolen.length * fleet.nodes.length });
    expect(report.pairs.resumed).toBe(report.pairs.tried);
    expect(await store.revocationRequest()).toBeUndefined();
    // The verifier's word, checked once more by hand on every node.
    for (const ticket of stolen) {
      for (const node of fleet.nodes) expect(await resumes(node, ticket.session, ticket.version), `${ticket.node}'s ticket on ${node.name}`).toBe(false);
    }
    const after = await captureTickets(fleet.runningNodes());
    for (const ticket of after) {
      for (const node of fleet.nodes) expect(await resumes(node, ticket.session, ticket.version), `${ticket.node}'s ticket on ${node.name}`).toBe(true);
    }
  });
});
