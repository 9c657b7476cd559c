import { randomUUID } from 'node:crypto';
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { currentKey, parseKeySet, serializeKeySet } from '../../src/core/keyset.js';
import { DEFAULT_ROTATION_INTERVAL_SECONDS, DEFAULT_TICKET_LIFETIME_SECONDS } from '../../src/core/policy.js';
import { applyPending, createPending, rotateNow, type RotationContext } from '../../src/core/rotation.js';
import { AWSCURRENT, AWSPENDING, AWSPREVIOUS } from '../../src/core/secret-store.js';
import { FileSecretStore } from '../../src/local/file-secret-store.js';
import { FileKeyNames } from '../../src/local/file-key-names.js';
import { parseKeyNames } from '../../src/core/key-names.js';
import { freePort, startLocalFleet, type LocalFleet } from '../../src/local/fleet.js';
import { LocalFleetVerifier } from '../../src/local/local-fleet-verifier.js';
import { LocalFleetCommander } from '../../src/local/local-fleet-commander.js';
import { applyTo, expectNoMaterial, freshTicket, olderSet } from '../support/helpers.js';

describe('rotation steps on a real local fleet', () => {
  let fleet: LocalFleet;
  let context: RotationContext;
  let store: FileSecretStore;
  const reported: string[] = [];

  beforeAll(async () => {
    fleet = await startLocalFleet({ nodeCount: 3 });
    store = fleet.store;
    context = {
      store,
      keyNames: new FileKeyNames(join(fleet.memoryDir, 'key-names.json')),
      commander: new LocalFleetCommander(fleet, store, { maxDelayMs: 50 }),
      policy: { rotationIntervalSeconds: DEFAULT_ROTATION_INTERVAL_SECONDS, ticketLifetimeSeconds: DEFAULT_TICKET_LIFETIME_SECONDS, keyLength: 80 },
    };
  });
  afterAll(async () => {
    // Everything the steps reported (node results, statuses, errors) is free of key material.
    const sets = await Promise.all(
      Object.keys(await store.versionStages()).map(async (versionId) => parseKeySet((await store.getVersion({ versionId }))!.value)),
    );
    expectNoMaterial(reported.join('\n'), sets);
    await fleet?.stop();
  });

  const current = async () => parseKeySet((await store.getVersion({ stage: AWSCURRENT }))!.value);

  it('the first rotation creates generation 1 on every node; the next moves AWSCURRENT and leaves the version before with no stage', async () => {
    const first = await rotateNow(context, randomUUID());
    reported.push(JSON.stringify(first.results));
    expect(first.keySet.generation).toBe(1);
    expect(first.results.map((result) => result.node).sort()).toEqual(['node1', 'node2', 'node3']);
    const second = await rotateNow(context, randomUUID());
    reported.push(JSON.stringify(second.results), JSON.stringify(await context.commander.status()));
    expect(second.keySet.generation).toBe(2);
    expect(await store.versionStages()).toEqual({ [second.versionId]: [AWSCURRENT] });
    expect(await store.getVersion({ stage: AWSPREVIOUS })).toBeUndefined();
    expect(await store.unlabelledVersionIds()).toEqual([first.versionId]);
    for (const node of fleet.nodes) expect((await freshTicket(node, 'TLSv1.3')).keyName).toBe(currentKey(second.keySet).name);
    // The names a verifier checks against, published with no material.
    const names = (): unknown => parseKeyNames(readFileSync(join(fleet.memoryDir, 'key-names.json'), 'utf8'));
    expect(names()).toEqual({ current: { versionId: second.versionId, generation: 2, currentKey: currentKey(second.keySet).name } });
    const token = randomUUID();
    const pending = await createPending(context, token);
    expect(names()).toEqual({
      current: { versionId: second.versionId, generation: 2, currentKey: currentKey(second.keySet).name },
      pending: { versionId: token, generation: 3, currentKey: currentKey(pending).name },
    });
    await rotateNow(context, token);
    expect(names()).toEqual({ current: { versionId: token, generation: 3, currentKey: currentKey(pending).name } });
  });

  it('createSecret is repeatable: the same token gives the same pending set', async () => {
    const token = randomUUID();
    const once = await createPending(context, token);
    const twice = await createPending(context, token);
    expect(serializeKeySet(twice)).toBe(serializeKeySet(once));
    expect(Object.values(await store.versionStages()).filter((stages) => stages.includes(AWSPENDING))).toHaveLength(1);
    await rotateNow(context, token);
  });

  it('a failed setSecret names the node and why; the next attempt carries the same pending set over and finishes', async () => {
    const broken = fleet.nodes[1]!;
    const config = readFileSync(broken.configFile, 'utf8');
    appendFileSync(broken.configFile, '\nbroken_on_purpose;\n');
    const token = randomUUID();
    const pending = await createPending(context, token);
    try {
      const failure = await applyPending(context, token).catch((error: Error) => error);
      reported.push(String(failure));
      expect(failure).toBeInstanceOf(Error);
      expect((failure as Error).message).toMatch(
        new RegExp(`generation ${pending.generation} did not reach every node: ${broken.name}: config test .*broken_on_purpose`),
      );
    } finally {
      writeFileSync(broken.configFile, config);
    }
    // The broken node still serves the current set; the others already serve the pending one.
    expect((await freshTicket(broken, 'TLSv1.2')).keyName).toBe(currentKey(await current()).name);
    const retry = await rotateNow(context, randomUUID());
    expect(serializeKeySet(retry.keySet)).toBe(serializeKeySet(pending));
    expect((await current()).generation).toBe(pending.generation);
  });

  it('the gate refuses to publish g+1 while a node is below g, and touches no node', async () => {
    const before = await current();
    const lagging = fleet.nodes[2]!;
    const older = await olderSet(store, before);
    expect((await applyTo(fleet, lagging, older, ['--allow-downgrade'])).exitCode).toBe(0);
    const token = randomUUID();
    await createPending(context, token);
    const workers = fleet.nodes.map((node) => fleet.workerPids(node));
    await expect(applyPending(context, token)).rejects.toThrow(
      new RegExp(`gate closed: ${lagging.name} \\(generation ${older.generation}\\) below the current generation ${before.generation}`),
    );
    expect(fleet.nodes.map((node) => fleet.workerPids(node))).toEqual(workers);
    // Bringing the node to the current set opens the gate again.
    expect((await applyTo(fleet, lagging, before)).exitCode).toBe(0);
    const done = await rotateNow(context, token);
    expect(done.keySet.generation).toBe(before.generation + 1);
  });

  it('testSecret fails the rotation when the verifier finds a problem, and AWSCURRENT stays', async () => {
    const before = await current();
    const targets = fleet.nodes.map(({ name, host, port }) => ({ name, host, port }));
    const ghost = { name: 'ghost', host: '127.0.0.1', port: await freePort() };
    const verifying = { ...context, verifier: new LocalFleetVerifier(() => [...targets, ghost]) };
    const failure = await rotateNow(verifying, randomUUID()).catch((error: Error) => error);
    reported.push(String(failure));
    expect((failure as Error).message).toMatch(/verification of generation \d+ failed: unreachable: ghost at 127\.0\.0\.1:\d+ over TLSv1\.2: ECONNREFUSED/);
    expect((await current()).generation).toBe(before.generation);
    // With the verifier on the real nodes only, the same pending set goes through, continuity checked.
    const done = await rotateNow({ ...context, verifier: new LocalFleetVerifier(() => targets) }, randomUUID());
    expect(done.verification).toMatchObject({ ok: true, continuity: { tried: 18, resumed: 18 }, pairs: { tried: 12, resumed: 12 } });
  });

  it('refuses to rotate from a malformed AWSCURRENT, writing nothing', async () => {
    const holder = Object.entries(await store.versionStages()).find(([, stages]) => stages.includes(AWSCURRENT))![0];
    const path = join(fleet.memoryDir, 'secret', 'versions', `${holder}.json`);
    const good = readFileSync(path, 'utf8');
    writeFileSync(path, good.replace(/"generation":\d+/, '"generation":"x"'));
    try {
      const stages = await store.versionStages();
      await expect(createPending(context, randomUUID())).rejects.toThrow(/AWSCURRENT key set \(version .*\) is malformed, so no rotation was started and nothing was written: key set generation "x"/);
      expect(await store.versionStages()).toEqual(stages);
    } finally {
      writeFileSync(path, good);
    }
  });

  it('recovers from a rotation cancelled part-way and cleaned up as AWS documents (AWSPENDING removed): the next rotation reuses the set some nodes took', async () => {
    const before = await current();
    const cancelled = randomUUID();
    const partial = await createPending(context, cancelled);
    // Two nodes took it before the rotation was cancelled.
    for (const node of fleet.nodes.slice(0, 2)) expect((await applyTo(fleet, node, partial)).exitCode).toBe(0);
    await store.removeStage(AWSPENDING, cancelled);
    const next = await rotateNow({ ...context, verifier: new LocalFleetVerifier(() => fleet.nodes) }, randomUUID());
    expect(next.keySet).toEqual(partial);
    expect(next.keySet.generation).toBe(before.generation + 1);
    expect(next.verification?.ok).toBe(true);
    const after = await rotateNow(context, randomUUID());
    expect(after.keySet.generation).toBe(before.generation + 2);
    for (const node of fleet.nodes) expect((await freshTicket(node, 'TLSv1.3')).keyName).toBe(currentKey(after.keySet).name);
  });
});
