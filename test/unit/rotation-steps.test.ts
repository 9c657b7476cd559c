// Each rotation step at its edges, on the local secret store with a scripted fleet: steps run out
// of order, retried or raced; what the rotation publishes for the verifier; the gate for nodes
// only the wire can see; and every message the steps give.
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createKeySet, currentKey, EMPTY_KEY_SET_PLACEHOLDER, revokeKeySet, rotateKeySet, serializeKeySet, type KeySet } from '../../src/core/keyset.js';
import type { KeyNamesBoard, PublishedKeyNames } from '../../src/core/key-names.js';
import {
  applyPending,
  createPending,
  finishPending,
  isConfigurationTest,
  pendingRevocation,
  rotateNow,
  RotationError,
  testPending,
  type FleetVerifier,
  type NodeResult,
  type NodeStatus,
  type RotationContext,
} from '../../src/core/rotation.js';
import { AWSCURRENT, AWSPENDING } from '../../src/core/secret-store.js';
import type { Failure, VerificationReport } from '../../src/verify/verifier.js';
import { FileSecretStore } from '../../src/local/file-secret-store.js';
import { makeMemoryDirectory } from '../../src/local/fleet.js';

const names = (set: KeySet): string[] => set.keys.map((key) => key.name);
const serving = (set: KeySet, node: string): NodeStatus => ({ node, generation: set.generation, keys: names(set) });
const applied = (set: KeySet, node: string): NodeResult => ({ ...serving(set, node), ok: true });

class RecordingBoard implements KeyNamesBoard {
  last?: PublishedKeyNames;
  async write(names: PublishedKeyNames): Promise<void> {
    this.last = names;
  }
}

function report(ok: boolean, failures: Failure[]): VerificationReport {
  return {
    ok,
    expectedKey: undefined,
    expectedKeyInferred: false,
    nodes: [],
    pairs: { tried: 0, resumed: 0 },
    pairsAcrossKeys: 0,
    continuity: { tried: 0, resumed: 0 },
    revocation: { tried: 0, refused: 0 },
    retired: { tried: 0, fellBack: 0 },
    peersPerNode: 0,
    failures,
    durationMs: 0,
  };
}

/** A verifier that records what it was asked and answers as scripted. */
class ScriptedVerifier implements FleetVerifier {
  observed: Record<string, string | null> = {};
  report = report(true, []);
  readonly calls: { observe: string[][]; captureBefore: string[]; verify: unknown[][] } = { observe: [], captureBefore: [], verify: [] };
  async captureBefore(versionId: string): Promise<void> {
    this.calls.captureBefore.push(versionId);
  }
  async verify(...args: unknown[]): Promise<VerificationReport> {
    this.calls.verify.push(args);
    return this.report;
  }
  async observe(nodes: string[]): Promise<Record<string, string | null>> {
    this.calls.observe.push(nodes);
    return this.observed;
  }
}

let dir: string;
let store: FileSecretStore;
let board: RecordingBoard;
let statuses: NodeStatus[];
let results: (versionId: string) => NodeResult[];
let context: RotationContext;

beforeEach(() => {
  dir = makeMemoryDirectory('rotation-steps-');
  store = new FileSecretStore(dir);
  board = new RecordingBoard();
  statuses = [];
  results = () => [];
  context = {
    store,
    keyNames: board,
    commander: { apply: (versionId) => Promise.resolve(results(versionId)), status: () => Promise.resolve(statuses) },
    policy: { rotationIntervalSeconds: 3600, ticketLifetimeSeconds: 3600, keyLength: 48 },
  };
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** A store whose AWSCURRENT is `set`, under a fresh version id. */
async function withCurrent(set: KeySet): Promise<string> {
  const versionId = randomUUID();
  await store.putVersion(versionId, serializeKeySet(set), [AWSCURRENT]);
  return versionId;
}

/**
 * A version holding `set` with no stage, as an operator leaves a cancelled rotation's version
 * (AWSPENDING taken off); a new version cannot be stored with no stage.
 */
async function unlabelled(set: KeySet, versionId = randomUUID()): Promise<string> {
  await store.putVersion(versionId, serializeKeySet(set), [AWSPENDING]);
  await store.removeStage(AWSPENDING, versionId);
  return versionId;
}

/** The message of the RotationError a promise rejects with (and that it is one, with no node results). */
async function rotationError(promise: Promise<unknown>): Promise<string> {
  const error = await promise.then(
    () => expect.unreachable('the step should have failed'),
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(RotationError);
  expect((error as RotationError).name).toBe('RotationError');
  return (error as RotationError).message;
}

describe('steps out of order', () => {
  it('setSecret, testSecret and finishSecret refuse a version createSecret never wrote, saying to run it', async () => {
    await withCurrent(createKeySet(48));
    const token = randomUUID();
    const expected = `version ${token} is not the pending key set: run the createSecret step for it first`;
    expect(await rotationError(applyPending(context, token))).toBe(expected);
    expect(await rotationError(testPending(context, token))).toBe(expected);
    expect(await rotationError(finishPending(context, token))).toBe(expected);
  });

  it('a version that is no longer pending: another rotation took AWSPENDING, or it was already promoted', async () => {
    await withCurrent(createKeySet(48));
    const first = randomUUID();
    const second = randomUUID();
    await createPending(context, first);
    await createPending(context, second);
    const error = (await applyPending(context, first).catch((reason: unknown) => reason)) as RotationError;
    expect(error).toEqual(
      new RotationError(
        `version ${first} is no longer the pending key set: version ${second} took AWSPENDING (a rotation started at the same time); this attempt stops here and promotes nothing; that rotation carries on`,
      ),
    );
    expect(error.results).toEqual([]);
    const unknown = randomUUID();
    expect(await rotationError(applyPending(context, unknown))).toBe(`version ${unknown} is not the pending key set: run the createSecret step for it first`);
    await finishPending(context, second);
    expect(await rotationError(applyPending(context, second))).toBe(`version ${second} is not the pending key set: run the createSecret step for it first`);
  });
});

describe('createSecret', () => {
  it('repeated with the same token writes nothing and returns the same set', async () => {
    await withCurrent(createKeySet(48));
    const token = randomUUID();
    const first = await createPending(context, token);
    const put = vi.spyOn(store, 'putVersion');
    expect(await createPending(context, token)).toEqual(first);
    expect(put).not.toHaveBeenCalled();
  });

  it('a revocation asked for before the first set writes the first set', async () => {
    store.requestRevocation('before any key existed');
    const set = await createPending(context, randomUUID());
    expect(set.generation).toBe(1);
    expect(set.keys.map((key) => key.state)).toEqual(['current', 'next']);
  });

  it('when the same step runs twice at once and the other stores its set first, it returns that set', async () => {
    const current = createKeySet(48);
    await withCurrent(current);
    const token = randomUUID();
    const theirs = rotateKeySet(current, 1);
    const put = store.putVersion.bind(store);
    vi.spyOn(store, 'putVersion').mockImplementationOnce(async (versionId, value, stages) => {
      await put(versionId, serializeKeySet(theirs), stages);
      return put(versionId, value, stages);
    });
    expect(await createPending(context, token)).toEqual(theirs);
    expect((await store.getVersion({ stage: AWSPENDING }))?.versionId).toBe(token);
  });

  it('a write that fails with nothing stored fails the step with that error', async () => {
    await withCurrent(createKeySet(48));
    vi.spyOn(store, 'putVersion').mockRejectedValueOnce(new Error('ThrottlingException: Rate exceeded'));
    await expect(createPending(context, randomUUID())).rejects.toThrow('ThrottlingException: Rate exceeded');
  });

  it('carries over an earlier attempt\'s unlabelled generation, before the first set too, and under its own token', async () => {
    await store.putVersion(randomUUID(), EMPTY_KEY_SET_PLACEHOLDER, [AWSCURRENT]);
    const earlier = createKeySet(48);
    await unlabelled(earlier);
    expect(await createPending(context, randomUUID())).toEqual(earlier);

    const again = randomUUID();
    const rotated = rotateKeySet(earlier, 1);
    await finishPending(context, (await store.getVersion({ stage: AWSPENDING }))!.versionId);
    await unlabelled(rotated, again);
    expect(await createPending(context, again)).toEqual(rotated);
    expect((await store.getVersion({ stage: AWSPENDING }))?.versionId).toBe(again);
  });
});

describe('the published key names', () => {
  it('createSecret publishes AWSCURRENT\'s and the pending current key; finishSecret publishes the new current alone', async () => {
    const current = createKeySet(48);
    const currentId = await withCurrent(current);
    const token = randomUUID();
    const pending = await createPending(context, token);
    expect(board.last).toStrictEqual({
      current: { versionId: currentId, generation: 1, currentKey: currentKey(current).name },
      pending: { versionId: token, generation: 2, currentKey: currentKey(pending).name },
    });
    await finishPending(context, token);
    expect(board.last).toStrictEqual({ current: { versionId: token, generation: 2, currentKey: currentKey(pending).name } });
  });

  it('before the first set (no AWSCURRENT, or the placeholder) only the pending names', async () => {
    const token = randomUUID();
    const first = await createPending(context, token);
    expect(board.last).toStrictEqual({ pending: { versionId: token, generation: 1, currentKey: currentKey(first).name } });

    rmSync(dir, { recursive: true, force: true });
    store = new FileSecretStore(dir);
    context.store = store;
    await store.putVersion(randomUUID(), EMPTY_KEY_SET_PLACEHOLDER, [AWSCURRENT]);
    const other = randomUUID();
    const set = await createPending(context, other);
    expect(board.last).toStrictEqual({ pending: { versionId: other, generation: 1, currentKey: currentKey(set).name } });
  });

  it('an AWSPENDING version that is not the next generation (a configuration test\'s copy, or no key set) is not published', async () => {
    const token = randomUUID();
    const set = await createPending(context, token);
    await finishPending(context, token);
    const published = { current: { versionId: token, generation: 1, currentKey: currentKey(set).name } };
    const current = await store.getVersion({ stage: AWSCURRENT });
    await store.putVersion(randomUUID(), current!.value, [AWSPENDING]);
    await finishPending(context, token);
    expect(board.last).toStrictEqual(published);
    await store.putVersion(randomUUID(), 'not a key set', [AWSPENDING]);
    await finishPending(context, token);
    expect(board.last).toStrictEqual(published);
  });
});

describe('which testSecret is Secrets Manager\'s configuration test', () => {
  it('one with no version, or one holding AWSCURRENT\'s value; not one createSecret wrote; with no AWSCURRENT at all, a set is no test', async () => {
    const token = randomUUID();
    expect(await isConfigurationTest(store, token)).toBe(true);
    await createPending(context, token);
    expect(await isConfigurationTest(store, token)).toBe(false);
    await finishPending(context, token);
    const copy = randomUUID();
    await store.putVersion(copy, (await store.getVersion({ stage: AWSCURRENT }))!.value, [AWSPENDING]);
    expect(await isConfigurationTest(store, copy)).toBe(true);
  });
});

describe('a pending revocation, for audit lines', () => {
  it('is the pending set that shares no key with AWSCURRENT; not an unknown token, not an unlabelled one, not a rotation', async () => {
    const current = createKeySet(48);
    await withCurrent(current);
    const rotation = randomUUID();
    await createPending(context, rotation);
    expect(await pendingRevocation(store, rotation)).toBeUndefined();
    const revoked = await unlabelled(revokeKeySet(current));
    expect(await pendingRevocation(store, randomUUID())).toBeUndefined();
    expect(await pendingRevocation(store, revoked)).toBeUndefined();
    await store.moveStage(AWSPENDING, revoked);
    expect((await pendingRevocation(store, revoked))?.generation).toBe(2);
  });
});

describe('setSecret', () => {
  let current: KeySet;
  let verifier: ScriptedVerifier;
  beforeEach(async () => {
    current = rotateKeySet(createKeySet(48), 1);
    await withCurrent(current);
    verifier = new ScriptedVerifier();
  });

  it('without a verifier: captures nothing and applies', async () => {
    const token = randomUUID();
    const pending = await createPending(context, token);
    statuses = [serving(current, 'node-a')];
    results = () => [applied(pending, 'node-a')];
    expect(await applyPending(context, token)).toEqual([applied(pending, 'node-a')]);
  });

  it('a node only the wire can see, still encrypting with a key of an older set, closes the gate; named, with what to do', async () => {
    context.verifier = verifier;
    const token = randomUUID();
    await createPending(context, token);
    const older = current.keys.find((key) => key.state === 'previous')!.name;
    statuses = [serving(current, 'node-a'), { node: 'node-b', keys: [], skipped: 'not connected to SSM' }, { node: 'node-c', keys: [], skipped: 'stopped' }];
    verifier.observed = { 'node-b': older, 'node-c': older };
    expect(await rotationError(applyPending(context, token))).toBe(
      `gate closed: node-b (not reachable through SSM, and it still serves tickets under ${older}, a key of an older set), ` +
        `node-c (not reachable through SSM, and it still serves tickets under ${older}, a key of an older set) below the current generation 2; ` +
        'publishing 3 now would leave it unable to resume tickets from the rest. Reconnect its SSM agent (or stop it), then rotate again.',
    );
    expect(verifier.calls.observe).toEqual([['node-b', 'node-c']]);
    expect(verifier.calls.captureBefore).toEqual([]);
  });

  it('lets through a skipped node on the current set or not answering, and asks the wire nothing when no node was skipped', async () => {
    context.verifier = verifier;
    const token = randomUUID();
    const pending = await createPending(context, token);
    results = () => [applied(pending, 'node-a')];
    statuses = [serving(current, 'node-a'), { node: 'node-b', keys: [], skipped: 'stopped' }, { node: 'node-c', keys: [], skipped: 'stopped' }];
    verifier.observed = { 'node-b': currentKey(current).name, 'node-c': null };
    await applyPending(context, token);
    statuses = [serving(current, 'node-a')];
    await applyPending(context, token);
    expect(verifier.calls.observe).toEqual([['node-b', 'node-c']]);
    expect(verifier.calls.captureBefore).toEqual([token, token]);
  });

  it('with no verifier, or before the first set, a skipped node is not looked for on the wire', async () => {
    statuses = [serving(current, 'node-a'), { node: 'node-b', keys: [], skipped: 'stopped' }];
    const token = randomUUID();
    const pending = await createPending(context, token);
    results = () => [applied(pending, 'node-a')];
    await applyPending(context, token);

    rmSync(dir, { recursive: true, force: true });
    store = new FileSecretStore(dir);
    context.store = store;
    context.verifier = verifier;
    const first = randomUUID();
    const firstSet = await createPending(context, first);
    statuses = [{ node: 'node-a', keys: [] }, { node: 'node-b', keys: [], skipped: 'stopped' }];
    results = () => [applied(firstSet, 'node-a')];
    await applyPending(context, first);
    expect(verifier.calls.observe).toEqual([]);
    expect(verifier.calls.captureBefore).toEqual([]);
  });

  it('names every node that failed or reports another set, with the results, in one message', async () => {
    const token = randomUUID();
    const pending = await createPending(context, token);
    statuses = [serving(current, 'node-a')];
    const nodes: NodeResult[] = [
      { node: 'node-a', ok: false, keys: [] },
      { node: 'node-b', ok: true, keys: [] },
      { node: 'node-c', ok: false, keys: [], error: 'nginx -t failed' },
      { node: 'node-d', ok: false, keys: [], skipped: 'stopped' },
      applied(pending, 'node-e'),
    ];
    results = () => nodes;
    const error = (await applyPending(context, token).catch((reason: unknown) => reason)) as RotationError;
    expect(error.message).toBe(
      'generation 3 did not reach every node: node-a: failed without a message; node-b: reports generation none, expected 3 with the pending keys; node-c: nginx -t failed',
    );
    expect(error.results).toEqual(nodes);
  });
});

describe('testSecret with a verifier', () => {
  it('before the first set, a skipped node is not expected to lag on any key', async () => {
    const verifier = new ScriptedVerifier();
    context.verifier = verifier;
    const token = randomUUID();
    const first = await createPending(context, token);
    statuses = [serving(first, 'node-a'), { node: 'node-b', keys: [], skipped: 'stopped' }];
    await testPending(context, token);
    expect(verifier.calls.verify).toEqual([[token, currentKey(first).name, 'resume', undefined]]);
  });

  it('asks a one-key server (Apache) for the full handshake its rotation costs, not for tickets that resume', async () => {
    const verifier = new ScriptedVerifier();
    context.verifier = verifier;
    context.policy = { rotationIntervalSeconds: 12 * 3600, ticketLifetimeSeconds: 12 * 3600, keyLength: 48, flavor: 'apache' };
    const token = randomUUID();
    const pending = await createPending(context, token);
    statuses = [serving(pending, 'node-a')];
    await testPending(context, token);
    expect(verifier.calls.verify).toEqual([[token, currentKey(pending).name, 'fall back to a full handshake', undefined]]);
  });

  it('fails with every finding of the handshakes, in one message', async () => {
    const verifier = new ScriptedVerifier();
    verifier.report = report(false, [
      { kind: 'wrong key', subject: 'node-a', detail: 'encrypts with k1' },
      { kind: 'not resumed', subject: 'node-a -> node-b', detail: 'node-b refused the ticket' },
    ]);
    context.verifier = verifier;
    const token = randomUUID();
    const first = await createPending(context, token);
    statuses = [serving(first, 'node-a')];
    expect(await rotationError(testPending(context, token))).toBe('verification of generation 1 failed: wrong key: encrypts with k1; not resumed: node-b refused the ticket');
  });
});

describe('finishSecret', () => {
  it('repeated once the version is AWSCURRENT changes nothing', async () => {
    const token = randomUUID();
    await createPending(context, token);
    await finishPending(context, token);
    const stages = await store.versionStages();
    await finishPending(context, token);
    expect(await store.versionStages()).toEqual(stages);
  });

  it('a revocation asked for during a rotation is kept for the next one', async () => {
    await withCurrent(createKeySet(48));
    const token = randomUUID();
    await createPending(context, token);
    store.requestRevocation('asked during the rotation');
    await finishPending(context, token);
    expect(await store.revocationRequest()).toBe('asked during the rotation');
  });
});

describe('the local rotation, all four steps', () => {
  it('returns the version, the set, each node\'s result, and the verification when there is a verifier', async () => {
    const token = randomUUID();
    const outcome = await rotateNow(context, token);
    expect(outcome).toStrictEqual({ versionId: token, keySet: outcome.keySet, results: [] });
    expect(outcome.keySet.generation).toBe(1);

    const verifier = new ScriptedVerifier();
    context.verifier = verifier;
    const next = randomUUID();
    const second = await rotateNow(context, next);
    expect(second).toStrictEqual({ versionId: next, keySet: second.keySet, results: [], verification: verifier.report });
  });
});
