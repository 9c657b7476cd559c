import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  createKeySet,
  currentKey,
  EMPTY_KEY_SET_PLACEHOLDER,
  KeySetError,
  nextKey,
  parseKeySet,
  previousKeys,
  revokeKeySet,
  rotateKeySet,
  serializeKeySet,
  summarizeKeySet,
  type KeySet,
} from '../../src/core/keyset.js';

describe('key set engine', () => {
  it('creates generation 1 with a current and a next key of 80 bytes by default, 48 on request', () => {
    const set = createKeySet();
    expect(set).toMatchObject({ format: 'tls-ticket-keyset', version: 1, generation: 1, keyLength: 80 });
    expect(set.keys.map((key) => key.state)).toEqual(['current', 'next']);
    for (const key of set.keys) {
      const raw = Buffer.from(key.material, 'base64');
      expect(raw).toHaveLength(80);
      expect(key.name).toBe(raw.subarray(0, 16).toString('hex'));
    }
    expect(Buffer.from(createKeySet(48).keys[0]!.material, 'base64')).toHaveLength(48);
    expect(() => createKeySet(64 as 80)).toThrow(/key length 64 is not supported: choose 80/);
  });

  it('rotates g -> g+1: next becomes current, a fresh next, the old current heads previous', () => {
    const one = createKeySet();
    const two = rotateKeySet(one, 2);
    expect(two.generation).toBe(2);
    expect(currentKey(two).material).toBe(nextKey(one).material);
    expect(currentKey(two).createdAt).toBe(nextKey(one).createdAt);
    expect([nextKey(one).name, currentKey(one).name]).not.toContain(nextKey(two).name);
    expect(previousKeys(two).map((key) => key.name)).toEqual([currentKey(one).name]);
    const three = rotateKeySet(two, 2);
    expect(previousKeys(three).map((key) => key.name)).toEqual([currentKey(two).name, currentKey(one).name]);
    const four = rotateKeySet(three, 2);
    expect(previousKeys(four).map((key) => key.name)).toEqual([currentKey(three).name, currentKey(two).name]);
    expect(() => rotateKeySet(four, 0)).toThrow(
      new KeySetError('previous keys to keep must be a whole number of at least 1 (got 0): without the old current key, tickets issued just before the rotation could not resume'),
    );
  });

  it('revokes: every key fresh, nothing retained, generation still moves forward', () => {
    const set = rotateKeySet(rotateKeySet(createKeySet(48), 2), 2);
    const revoked = revokeKeySet(set);
    expect(revoked.generation).toBe(set.generation + 1);
    expect(revoked.keyLength).toBe(48);
    expect(revoked.keys).toHaveLength(2);
    const old = new Set(set.keys.map((key) => key.name));
    expect(revoked.keys.some((key) => old.has(key.name))).toBe(false);
  });

  it('round-trips through its serialized form, and the summary is everything but the material', () => {
    const set = rotateKeySet(createKeySet(), 1);
    expect(parseKeySet(serializeKeySet(set))).toEqual(set);
    expect(summarizeKeySet(set)).toStrictEqual({
      generation: 2,
      keyLength: 80,
      keys: set.keys.map((key) => ({ name: key.name, state: key.state, createdAt: key.createdAt })),
    });
  });

  it('refuses a random source that returns fewer bytes than a key needs', () => {
    expect(() => createKeySet(48, { random: (size) => Buffer.alloc(size - 1) })).toThrow(new KeySetError('random source returned 47 bytes, expected 48'));
  });

  it('the secret\'s value before the first rotation holds no key and says so to whoever reads it; the engine refuses it as a set', () => {
    expect(JSON.parse(EMPTY_KEY_SET_PLACEHOLDER)).toStrictEqual({ format: 'tls-ticket-keyset', version: 1, note: 'no keys yet: the first rotation writes generation 1' });
    expect(() => parseKeySet(EMPTY_KEY_SET_PLACEHOLDER)).toThrow(/key set has unknown field\(s\) note/);
  });

  it('never quotes the input in its errors, so material cannot leak through them', () => {
    const set = createKeySet();
    const broken = serializeKeySet(set).replace('"keys"', 'keys');
    try {
      parseKeySet(broken);
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(KeySetError);
      expect((error as Error).name).toBe('KeySetError');
      expect((error as Error).message).not.toContain(set.keys[0]!.material.slice(0, 12));
    }
  });
});

describe('rotation invariants (property tests)', () => {
  const sequences = fc.record({
    keyLength: fc.constantFrom(80 as const, 48 as const),
    retained: fc.integer({ min: 1, max: 6 }),
    steps: fc.array(fc.constantFrom('rotate', 'rotate', 'rotate', 'revoke'), { minLength: 1, maxLength: 30 }),
  });

  it('any two sets one rotation apart each hold the other\'s current key; sizes bounded; names unique; lengths constant', () => {
    fc.assert(
      fc.property(sequences, ({ keyLength, retained, steps }) => {
        let set = createKeySet(keyLength);
        for (const step of steps) {
          const next = step === 'rotate' ? rotateKeySet(set, retained) : revokeKeySet(set);
          expect(next.generation).toBe(set.generation + 1);
          if (step === 'rotate') {
            const names = (s: KeySet): string[] => s.keys.map((key) => key.name);
            expect(names(next)).toContain(currentKey(set).name);
            expect(names(set)).toContain(currentKey(next).name);
          }
          expect(next.keys.length).toBeLessThanOrEqual(2 + retained);
          expect(new Set(next.keys.map((key) => key.name)).size).toBe(next.keys.length);
          for (const key of next.keys) expect(Buffer.from(key.material, 'base64')).toHaveLength(keyLength);
          expect(parseKeySet(serializeKeySet(next))).toEqual(next);
          set = next;
        }
      }),
      { numRuns: 200 },
    );
  });
});
