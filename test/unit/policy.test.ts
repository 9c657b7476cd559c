import { describe, expect, it } from 'vitest';
import { createKeySet, rotateKeySet, serializeKeySet, SECRET_VALUE_MAX_BYTES, type KeySet } from '../../src/core/keyset.js';
import {
  defaultKeyLength,
  defaultTicketLifetimeSeconds,
  formatDuration, keySetBytes, keySetCapacity, parseDuration,
  PolicyError,
  previousKeysToKeep,
  rotationCost,
  ticketsSurviveRotation,
} from '../../src/core/policy.js';

describe('retention policy', () => {
  it('keeps ceil(ticket lifetime / rotation interval) previous keys', () => {
    const policy = (interval: string, lifetime: string) => ({
      rotationIntervalSeconds: parseDuration(interval, 'interval'),
      ticketLifetimeSeconds: parseDuration(lifetime, 'lifetime'),
      keyLength: 80 as const,
    });
    expect(previousKeysToKeep(policy('12h', '12h'))).toBe(1);
    expect(previousKeysToKeep(policy('12h', '1h'))).toBe(1);
    expect(previousKeysToKeep(policy('6h', '18h'))).toBe(3);
    expect(previousKeysToKeep(policy('1h', '18h1s'))).toBe(19);
  });

  it('keeps ceil((lifetime + lateness) / interval) when scheduled rotations may take effect late, and defaults the lifetime to what the server holds', () => {
    const scheduled = { rotationIntervalSeconds: 12 * 3600, ticketLifetimeSeconds: 12 * 3600, keyLength: 80 as const, rotationLatenessSeconds: 75 * 60 };
    expect(previousKeysToKeep(scheduled)).toBe(2);
    expect(previousKeysToKeep({ ...scheduled, ticketLifetimeSeconds: 10 * 3600 + 45 * 60 })).toBe(1);
    expect(defaultTicketLifetimeSeconds(scheduled)).toBe(12 * 3600);
    expect(defaultTicketLifetimeSeconds({ ...scheduled, flavor: 'haproxy' })).toBe(10 * 3600);
    expect(defaultTicketLifetimeSeconds({ ...scheduled, flavor: 'haproxy', rotationIntervalSeconds: 24 * 3600 })).toBe(12 * 3600);
    expect(previousKeysToKeep({ ...scheduled, flavor: 'haproxy', ticketLifetimeSeconds: defaultTicketLifetimeSeconds({ ...scheduled, flavor: 'haproxy' }) })).toBe(1);
    // Under an hour, minutes: every 30 minutes on the Scheduler (21 minutes late at most) leaves HAProxy 9 minutes.
    for (const minutes of [30, 45, 60, 75, 120]) {
      const frequent = { ...scheduled, flavor: 'haproxy' as const, rotationIntervalSeconds: minutes * 60, rotationLatenessSeconds: 21 * 60 };
      expect(previousKeysToKeep({ ...frequent, ticketLifetimeSeconds: defaultTicketLifetimeSeconds(frequent) }), `${minutes} minutes`).toBe(1);
    }
    expect(defaultTicketLifetimeSeconds({ ...scheduled, flavor: 'haproxy', rotationIntervalSeconds: 30 * 60, rotationLatenessSeconds: 21 * 60 })).toBe(9 * 60);
  });

  it('refuses a rotation interval too short for the ticket lifetime, saying what to change', () => {
    // The advice is exact: 604800 s over the 290 previous keys a set of 292 holds is 2085.5 s,
    // rounded up; 290 intervals of 60 s are 4h50m.
    expect(() => previousKeysToKeep({ rotationIntervalSeconds: 60, ticketLifetimeSeconds: 7 * 86400, keyLength: 80 })).toThrow(
      new PolicyError(
        "rotation interval too short for client session lifetime: rotating every 1m with a ticket lifetime of 7d needs 10080 previous keys plus current and next, but a key set of 80-byte keys holds at most 292 keys (Secrets Manager's 65536-byte limit). Rotate no more often than every 34m46s, or shorten the ticket lifetime to at most 4h50m.",
      ),
    );
    // With lateness: ceil((3h + 10m) / 1h) = 4 needed, 1 held; the lifetime must end 10m before the next rotation may.
    expect(() => previousKeysToKeep({ rotationIntervalSeconds: 3600, ticketLifetimeSeconds: 3 * 3600, keyLength: 80, flavor: 'haproxy', rotationLatenessSeconds: 600 })).toThrow(
      new PolicyError(
        'rotation interval too short for client session lifetime: rotating every 1h (each rotation taking effect up to 10m after its scheduled time) with a ticket lifetime of 3h needs 4 previous keys plus current and next, but haproxy holds at most 3 keys (1 previous, current and next). Rotate no more often than every 3h10m, or shorten the ticket lifetime to at most 50m.',
      ),
    );
    expect(() => previousKeysToKeep({ rotationIntervalSeconds: 600, ticketLifetimeSeconds: 3600, keyLength: 80, rotationLatenessSeconds: 600 })).toThrow(
      new PolicyError('rotation interval 10m is not longer than how late a scheduled rotation may take effect (10m: its window and the time to apply it): rotate less often than every 10m'),
    );
    expect(previousKeysToKeep({ rotationIntervalSeconds: 601, ticketLifetimeSeconds: 1, keyLength: 80, rotationLatenessSeconds: 600 })).toBe(1);
    expect(previousKeysToKeep({ rotationIntervalSeconds: 601, ticketLifetimeSeconds: 2, keyLength: 80, rotationLatenessSeconds: 600 })).toBe(2);
    expect(() =>
      previousKeysToKeep({ rotationIntervalSeconds: 3600, ticketLifetimeSeconds: 3 * 3600, keyLength: 80, flavor: 'haproxy' }),
    ).toThrow(/haproxy holds at most 3 keys \(1 previous, current and next\)\. Rotate no more often than every 3h, or shorten the ticket lifetime to at most 1h/);
    expect(previousKeysToKeep({ rotationIntervalSeconds: 3600, ticketLifetimeSeconds: 3600, keyLength: 80, flavor: 'haproxy' })).toBe(1);
    expect(previousKeysToKeep({ rotationIntervalSeconds: 3600, ticketLifetimeSeconds: 3 * 3600, keyLength: 80, flavor: 'nginx' })).toBe(3);
    expect(() => previousKeysToKeep({ rotationIntervalSeconds: 3600, ticketLifetimeSeconds: 8 * 86400, keyLength: 80 })).toThrow(
      /longer than TLS allows \(RFC 8446: at most 7d\)/,
    );
    expect(() => previousKeysToKeep({ rotationIntervalSeconds: 0, ticketLifetimeSeconds: 60, keyLength: 80 })).toThrow(/longer than zero/);
    for (const lifetime of [0, -1, Number.NaN]) {
      expect(() => previousKeysToKeep({ rotationIntervalSeconds: 3600, ticketLifetimeSeconds: lifetime, keyLength: 80 })).toThrow(
        new PolicyError(`ticket lifetime must be longer than zero (got ${lifetime} seconds)`),
      );
    }
  });

  it('derives the key set capacity from the secret size limit, and a full set really fits', () => {
    // Secrets Manager's SecretString limit, 65,536 bytes: 292 keys of 80 bytes, 363 of 48.
    expect(SECRET_VALUE_MAX_BYTES).toBe(65_536);
    expect([keySetCapacity(80), keySetCapacity(48)]).toEqual([292, 363]);
    expect(keySetBytes(80, 3) - keySetBytes(80, 2)).toBe(224);
    for (const keyLength of [80, 48] as const) {
      const capacity = keySetCapacity(keyLength);
      expect(keySetBytes(keyLength, capacity)).toBeLessThanOrEqual(SECRET_VALUE_MAX_BYTES);
      expect(keySetBytes(keyLength, capacity + 1)).toBeGreaterThan(SECRET_VALUE_MAX_BYTES);
      let set: KeySet = createKeySet(keyLength);
      for (let i = 0; i < capacity; i += 1) set = rotateKeySet(set, capacity - 2);
      expect(set.keys).toHaveLength(capacity);
      expect(Buffer.byteLength(serializeKeySet(set))).toBeLessThanOrEqual(keySetBytes(keyLength, capacity));
    }
  });

  it('parses and formats durations, refusing nonsense', () => {
    expect(parseDuration('1h30m', 'x')).toBe(5400);
    expect(parseDuration('7d', 'x')).toBe(604800);
    expect(parseDuration(' 90s\n', 'x')).toBe(90);
    expect(formatDuration(5400)).toBe('1h30m');
    expect(formatDuration(0)).toBe('0s');
    expect(() => parseDuration('12 hours', 'rotation interval')).toThrow(/rotation interval "12 hours" is not a duration: write it like/);
    expect(() => parseDuration(' ', 'ticket lifetime')).toThrow(new PolicyError('ticket lifetime " " is not a duration: write it like 90s, 30m, 12h, 7d or 1h30m'));
    expect(() => parseDuration('', 'ticket lifetime')).toThrow(expect.objectContaining({ name: 'PolicyError', message: expect.stringMatching(/"" is not a duration/) }));
    expect(() => parseDuration('0s', 'ticket lifetime')).toThrow(/longer than zero/);
  });
});

describe('a server that holds one key (Apache)', () => {
  const apache = { rotationIntervalSeconds: 12 * 3600, ticketLifetimeSeconds: 12 * 3600, keyLength: 48 as const, flavor: 'apache' as const };

  it("keeps the set's one previous key, which no node loads, and lets no ticket outlive a rotation", () => {
    expect(ticketsSurviveRotation('apache')).toBe(false);
    expect(ticketsSurviveRotation('nginx') && ticketsSurviveRotation('haproxy') && ticketsSurviveRotation()).toBe(true);
    expect(previousKeysToKeep(apache)).toBe(1);
    expect(previousKeysToKeep({ ...apache, rotationLatenessSeconds: 75 * 60 })).toBe(1);
    expect(defaultTicketLifetimeSeconds({ ...apache, rotationIntervalSeconds: 7 * 86400 })).toBe(12 * 3600);
    expect(defaultTicketLifetimeSeconds({ ...apache, rotationIntervalSeconds: 5 * 3600 + 59 * 60 })).toBe(5 * 3600);
    expect(defaultTicketLifetimeSeconds({ ...apache, rotationIntervalSeconds: 3600 })).toBe(3600);
    expect(() => previousKeysToKeep({ ...apache, ticketLifetimeSeconds: 12 * 3600 + 1 })).toThrow(
      new PolicyError(
        'ticket lifetime 12h1s is longer than the rotation interval 12h, but apache holds one ticket key: no ticket outlives the next rotation. Shorten the ticket lifetime to at most 12h.',
      ),
    );
  });

  it('says what every rotation costs, and refuses an interval under an hour', () => {
    expect(rotationCost(apache)).toBe(
      'apache holds one ticket key, with no previous or next key beside it: every rotation costs each client a full handshake, on every node at once, and while the nodes switch one by one, one more at each connection that meets a node on the other key (tickets still resume across nodes between rotations). Rotating every 12h, clients pay it once every 12h; a longer interval makes it rarer.',
    );
    expect(rotationCost({ ...apache, flavor: 'nginx' })).toBeUndefined();
    expect(rotationCost({ ...apache, flavor: 'haproxy' })).toBeUndefined();
    expect(previousKeysToKeep({ ...apache, rotationIntervalSeconds: 3600, ticketLifetimeSeconds: 3600 })).toBe(1);
    expect(() => previousKeysToKeep({ ...apache, rotationIntervalSeconds: 3599, ticketLifetimeSeconds: 60 })).toThrow(
      new PolicyError(
        'rotation interval 59m59s is too short for apache: it holds one ticket key, so every rotation costs each client one full handshake, on every node at once. Rotate no more often than every 1h; 12h or more keeps the cost rare.',
      ),
    );
  });

  it('takes 48-byte keys only, and makes them by default', () => {
    expect(defaultKeyLength('apache')).toBe(48);
    expect(defaultKeyLength('nginx')).toBe(80);
    expect(defaultKeyLength()).toBe(80);
    expect(() => previousKeysToKeep({ ...apache, keyLength: 80 })).toThrow(
      new PolicyError('apache reads 48-byte ticket keys, not 80-byte ones: set the key length to 48'),
    );
  });
});
