// The rotation's checks on what nodes report, with a scripted fleet: the gate before setSecret,
// and testSecret's reading of every node's status.
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createKeySet, currentKey, rotateKeySet, serializeKeySet, type KeySet } from '../../src/core/keyset.js';
import { checkGate, createPending, RotationError, testPending, type NodeStatus, type RotationContext } from '../../src/core/rotation.js';
import { AWSCURRENT } from '../../src/core/secret-store.js';
import { FileSecretStore } from '../../src/local/file-secret-store.js';
import { makeMemoryDirectory } from '../../src/local/fleet.js';

const names = (set: KeySet): string[] => set.keys.map((key) => key.name);

describe('the gate', () => {
  const current = rotateKeySet(rotateKeySet(createKeySet(), 1), 1);

  it('closes on every node that answers with an older generation or none, naming each, and says what to do', () => {
    const statuses: NodeStatus[] = [
      { node: 'node-a', generation: 3, keys: names(current) },
      { node: 'node-b', generation: 2, keys: [] },
      { node: 'node-c', keys: [] },
    ];
    expect(() => checkGate(current, statuses)).toThrow(
      new RotationError(
        'gate closed: node-b (generation 2), node-c (no key set) below the current generation 3; publishing 4 now would leave those nodes unable to resume tickets from the rest. Bring them to the current key set first (apply AWSCURRENT to them), then rotate again.',
      ),
    );
  });

  it('lets through a node at the current generation or above, one it could not ask (skipped), one whose status failed, and any fleet before the first set', () => {
    const statuses: NodeStatus[] = [
      { node: 'node-a', generation: 3, keys: [] },
      { node: 'node-b', generation: 4, keys: [] },
      { node: 'node-c', generation: 1, keys: [], skipped: 'stopped' },
      { node: 'node-d', generation: 1, keys: [], error: 'the status command failed' },
    ];
    expect(() => checkGate(current, statuses)).not.toThrow();
    expect(() => checkGate(undefined, [{ node: 'node-e', keys: [] }])).not.toThrow();
  });
});

describe('testSecret on what every node reports', () => {
  let dir: string;
  let statuses: NodeStatus[];
  let context: RotationContext;
  let pending: KeySet;
  let token: string;

  beforeEach(async () => {
    dir = makeMemoryDirectory('test-secret-');
    const store = new FileSecretStore(dir);
    await store.putVersion(randomUUID(), serializeKeySet(createKeySet()), [AWSCURRENT]);
    context = {
      store,
      commander: { apply: () => Promise.reject(new Error('testSecret applies nothing')), status: () => Promise.resolve(statuses) },
      policy: { rotationIntervalSeconds: 3600, ticketLifetimeSeconds: 3600, keyLength: 80 },
    };
    token = randomUUID();
    pending = await createPending(context, token);
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('passes when every node asked serves the pending set; a skipped node neither passes nor fails', async () => {
    statuses = [
      { node: 'node-a', generation: 2, keys: names(pending) },
      { node: 'node-b', keys: [], skipped: 'not connected to SSM' },
    ];
    expect((await testPending(context, token)).statuses).toEqual(statuses);
  });

  it('fails naming each node that serves another set, another generation, or could not say', async () => {
    const impostor = rotateKeySet(createKeySet(), 1);
    statuses = [
      { node: 'node-a', generation: 2, keys: names(pending) },
      { node: 'node-b', generation: 2, keys: names(impostor) },
      { node: 'node-c', generation: 1, keys: names(pending) },
      { node: 'node-d', keys: [], error: 'its key files no longer match its recorded generation' },
    ];
    await expect(testPending(context, token)).rejects.toThrow(
      new RotationError(
        'nodes do not serve generation 2: node-b: reports generation 2, expected 2 with the pending keys; node-c: reports generation 1, expected 2 with the pending keys; node-d: its key files no longer match its recorded generation',
      ),
    );
    expect(currentKey(impostor).name).not.toBe(currentKey(pending).name);
  });
});
