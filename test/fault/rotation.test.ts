// Fault matrix, rotation level, on real nginx: a node dying mid-rollout, a node down for a whole
// rotation, the same step run twice at once, two rotations at once. After every fault, every
// pair of running nodes must still resume each other's tickets, and the fleet must end on one set.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { currentKey, parseKeySet, type KeySet } from '../../src/core/keyset.js';
import { DEFAULT_ROTATION_INTERVAL_SECONDS, DEFAULT_TICKET_LIFETIME_SECONDS } from '../../src/core/policy.js';
import { applyPending, createPending, finishPending, rotateNow, testPending, RotationError, type RotationContext } from '../../src/core/rotation.js';
import { AWSCURRENT, AWSPENDING } from '../../src/core/secret-store.js';
import { FileSecretStore } from '../../src/local/file-secret-store.js';
import { startLocalFleet, type FleetNode, type LocalFleet } from '../../src/local/fleet.js';
import { LocalFleetCommander } from '../../src/local/local-fleet-commander.js';
import { LocalFleetVerifier } from '../../src/local/local-fleet-verifier.js';
import { verifyFleet } from '../../src/verify/verifier.js';
import { startWithoutStore } from '../support/helpers.js';

describe('fault matrix: rotations under faults on a real fleet', () => {
  let fleet: LocalFleet;
  let store: FileSecretStore;
  let context: RotationContext;

  const current = async (): Promise<KeySet> => parseKeySet((await store.getVersion({ stage: AWSCURRENT }))!.value);
  const statuses = async () => (await context.commander.status()).map((status) => `${status.node}:${status.generation ?? 'none'}:${status.keys.join(',')}`);

  /** Every running pair resumes both ways: no client would see a lost resumption now. */
  const expectMutualResumption = async (when: string): Promise<void> => {
    const report = await verifyFleet(fleet.runningNodes());
    const lost = report.failures.filter((failure) => failure.kind !== 'wrong key');
    expect(lost, when).toEqual([]);
    expect(report.pairs.resumed, when).toBe(report.pairs.tried);
  };

  /** One set on every running node, the current one, and the handshakes agree. */
  const expectConverged = async (when: string): Promise<void> => {
    const set = await current();
    const names = set.keys.map((key) => key.name).join(',');
    expect(await statuses(), when).toEqual(fleet.runningNodes().map((node) => `${node.name}:${set.generation}:${names}`));
    const report = await verifyFleet(fleet.runningNodes(), { expectedKey: currentKey(set).name });
    expect(report.failures, when).toEqual([]);
  };

  beforeAll(async () => {
    fleet = await startLocalFleet({ nodeCount: 3, fetchWaitSeconds: 1 });
    store = fleet.store;
    context = {
      store,
      commander: new LocalFleetCommander(fleet, store, { maxDelayMs: 100 }),
      verifier: new LocalFleetVerifier(() => fleet.runningNodes()),
      policy: { rotationIntervalSeconds: DEFAULT_ROTATION_INTERVAL_SECONDS, ticketLifetimeSeconds: DEFAULT_TICKET_LIFETIME_SECONDS, keyLength: 80 },
    };
    await rotateNow(context, randomUUID());
  });
  afterAll(async () => {
    await fleet?.stop();
  });

  it('a node that dies mid-rollout fails setSecret naming it; nothing is promoted; it returns; the retry finishes', async () => {
    const before = await current();
    const victim = fleet.nodes[1] as FleetNode;
    // Run Command still targets an instance that died a moment ago.
    const staleInventory: LocalFleet = { ...fleet, runningNodes: () => fleet.nodes };
    const commander = new LocalFleetCommander(staleInventory, store);
    const token = randomUUID();
    await createPending(context, token);
    await fleet.stopNode(victim);
    const failed = applyPending({ ...context, commander: { apply: (id) => commander.apply(id), status: () => context.commander.status() } }, token);
    await expect(failed).rejects.toThrow(RotationError);
    await expect(failed).rejects.toThrow(new RegExp(`did not reach every node: ${victim.name}: `));
    expect((await current()).generation).toBe(before.generation);
    await expectMutualResumption('with the victim down');

    await fleet.startNode(victim);
    await expectMutualResumption('with the victim back on the previous generation');
    const outcome = await rotateNow(context, randomUUID());
    expect(outcome.keySet.generation).toBe(before.generation + 1);
    await expectConverged('after the retry');
  });

  it('a node down for a whole rotation that cannot reach the store when it starts returns behind: the gate holds the next rotation, touching no node, until the association converges it', async () => {
    const victim = fleet.nodes[2] as FleetNode;
    await fleet.stopNode(victim);
    const rotated = await rotateNow(context, randomUUID());
    const missed = rotated.keySet;
    // Stopped, it is skipped and named, as the SSM commander skips an instance that is not connected.
    expect(rotated.results.filter((result) => result.skipped !== undefined)).toEqual([{ node: victim.name, ok: false, keys: [], skipped: 'its server is stopped' }]);
    expect((await startWithoutStore(fleet, victim)).summary).toMatchObject({ keySource: 'kept', generation: missed.generation - 1 });
    // One generation behind still resumes both ways: that is what the next key is for.
    await expectMutualResumption('with the victim one generation behind');
    const seen = await statuses();

    const held = rotateNow(context, randomUUID());
    await expect(held).rejects.toThrow(new RegExp(`gate closed: ${victim.name} \\(generation ${missed.generation - 1}\\) below the current generation ${missed.generation}`));
    expect(await statuses(), 'the gate touched a node').toEqual(seen);
    expect((await current()).generation).toBe(missed.generation);

    expect(await (context.commander as LocalFleetCommander).applyCurrent(victim)).toMatchObject({ ok: true, generation: missed.generation });
    await expectConverged('after the association');
    const next = await rotateNow(context, randomUUID());
    expect(next.keySet.generation).toBe(missed.generation + 1);
    await expectConverged('after the held rotation went through');
  });

  it('runs each step twice at once without harm: one pending version, one promotion, every node on it', async () => {
    const before = await current();
    const token = randomUUID();
    const [first, second] = await Promise.all([createPending(context, token), createPending(context, token)]);
    expect(first).toEqual(second);
    const pending = Object.entries(await store.versionStages()).filter(([, stages]) => stages.includes(AWSPENDING));
    expect(pending.map(([id]) => id)).toEqual([token]);
    const applied = await Promise.all([applyPending(context, token), applyPending(context, token)]);
    // The applier's lock makes one run apply and the other find it done.
    expect(applied.flat().every((result) => result.ok)).toBe(true);
    expect(applied.flat().filter((result) => result.action === 'applied')).toHaveLength(fleet.runningNodes().length);
    await Promise.all([testPending(context, token), testPending(context, token)]);
    await Promise.all([finishPending(context, token), finishPending(context, token)]);
    expect((await current()).generation).toBe(before.generation + 1);
    expect((await store.getVersion({ stage: AWSCURRENT }))?.versionId).toBe(token);
    expect((await store.getVersion({ stage: AWSPENDING }))).toBeUndefined();
    await expectConverged('after every step ran twice');
  });

  it('two rotations requested at once: the fleet never stops resuming, ends on one set, and the next rotation works', async () => {
    const before = await current();
    const outcomes = await Promise.allSettled([rotateNow(context, randomUUID()), rotateNow(context, randomUUID())]);
    const finished = outcomes.filter((outcome) => outcome.status === 'fulfilled');
    const refused = outcomes.flatMap((outcome) => (outcome.status === 'rejected' ? [String(outcome.reason)] : []));
    expect(finished.length + refused.length).toBe(2);
    // One wins; the other, if it lost the pending stage, says so and touched no node.
    expect(finished.length).toBeGreaterThanOrEqual(1);
    for (const reason of refused) expect(reason).toMatch(/is no longer the pending key set: version \S+ took AWSPENDING \(a rotation started at the same time\); this attempt stops here and promotes nothing/);
    console.log(`two rotations at once: ${finished.length} finished; refused: ${refused.join(' | ') || 'none'}`);
    await expectMutualResumption(`after two rotations at once (${refused.join(' | ')})`);
    const promoted = await current();
    expect(promoted.generation).toBeLessThanOrEqual(before.generation + 2);
    // Whatever happened, a later rotation completes and every node agrees.
    await rotateNow(context, randomUUID());
    await expectConverged(`after the next rotation (the concurrent pair: ${finished.length} finished; ${refused.join(' | ')})`);
  });
});
