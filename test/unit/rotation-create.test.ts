import { makeMemoryDirectory } from '../../src/local/fleet.js';
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { serializeKeySet } from '../../src/core/keyset.js';
import { createPending, finishPending, type FleetCommander, type RotationContext } from '../../src/core/rotation.js';
import { AWSPENDING } from '../../src/core/secret-store.js';
import { FileSecretStore } from '../../src/local/file-secret-store.js';

const untouchedFleet: FleetCommander = {
  apply: () => Promise.reject(new Error('createSecret must not touch the fleet')),
  status: () => Promise.reject(new Error('createSecret must not touch the fleet')),
};

describe('createSecret carry-over', () => {
  let dir: string;
  let context: RotationContext;
  let store: FileSecretStore;
  beforeEach(() => {
    dir = makeMemoryDirectory('create-test-');
    store = new FileSecretStore(dir);
    context = {
      store,
      commander: untouchedFleet,
      policy: { rotationIntervalSeconds: 3600, ticketLifetimeSeconds: 7200, keyLength: 48 },
    };
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('carries a failed first attempt\'s generation 1 over to the next attempt', async () => {
    const first = await createPending(context, randomUUID());
    const retry = await createPending(context, randomUUID());
    expect(first.generation).toBe(1);
    expect(first.keyLength).toBe(48);
    expect(serializeKeySet(retry)).toBe(serializeKeySet(first));
    expect(Object.values(await context.store.versionStages()).filter((stages) => stages.includes(AWSPENDING))).toHaveLength(1);
  });

  it('keeps the policy\'s previous keys, and a revocation goes above a stuck pending generation', async () => {
    const token = randomUUID();
    await createPending(context, token);
    await finishPending(context, token);
    const two = randomUUID();
    await createPending(context, two);
    await finishPending(context, two);
    const three = await createPending(context, randomUUID());
    expect(three.generation).toBe(3);
    expect(three.keys.filter((key) => key.state === 'previous')).toHaveLength(2);
    store.requestRevocation('alice: INC-42');
    const revokedToken = randomUUID();
    const revoked = await createPending(context, revokedToken);
    expect(revoked.generation).toBe(4);
    expect(revoked.keys).toHaveLength(2);
    expect(revoked.keys.map((key) => key.name)).not.toContain(three.keys[0]!.name);
    // Until it is AWSCURRENT the request stands; finishing the revocation withdraws it.
    expect(await store.revocationRequest()).toBe('alice: INC-42');
    await finishPending(context, revokedToken);
    expect(await store.revocationRequest()).toBeUndefined();
    expect((await createPending(context, randomUUID())).keys.filter((key) => key.state === 'previous')).toHaveLength(1);
  });
});
