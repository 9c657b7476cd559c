// Retention under the schedule's jitter, as a property: rotations start on their schedule's grid
// (Secrets Manager: anywhere in the window of each period; the Scheduler: on time, or late by its
// retries), and each takes effect on the nodes between its start and the end of its setSecret.
// Through any such sequence, built with the real key set engine, no key is dropped while a ticket
// it encrypted can still be younger than the ticket lifetime.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createKeySet, currentKey, rotateKeySet, type KeySet } from '../../src/core/keyset.js';
import { PolicyError, previousKeysToKeep, type RotationPolicy } from '../../src/core/policy.js';
import { SERVER_FLAVORS } from '../../src/flavors/index.js';
import { ROTATION_APPLY_SECONDS, rotationScheduleFor, SCHEDULER_MAX_EVENT_AGE_SECONDS, SCHEDULER_PRECISION_SECONDS, SECRETS_MANAGER_WINDOW_SECONDS } from '../../src/core/schedule.js';

const MINUTE = 60;
const HOUR = 3600;

interface Rotation {
  /** Within the schedule's start window: 0 is on time, 1 its latest. */
  start: number;
  /** Within the time to apply: 0 is at once, 1 at the end of setSecret. */
  apply: number;
}

/** The first key whose tickets a node may still be asked to resume after the set no longer holds it: its retirement and its drop, or nothing. */
function tooEarlyDrop(policy: RotationPolicy, rotations: Rotation[], startWindowSeconds: number): string | undefined {
  const retained = previousKeysToKeep(policy);
  const interval = policy.rotationIntervalSeconds;
  // Each set takes effect when the last node applies it; the first node may apply it at its start.
  const sets: { set: KeySet; first: number; last: number }[] = [{ set: createKeySet(), first: 0, last: 0 }];
  rotations.forEach((rotation, index) => {
    const start = (index + 1) * interval + rotation.start * startWindowSeconds;
    sets.push({ set: rotateKeySet(sets[index]!.set, retained), first: start, last: start + rotation.apply * ROTATION_APPLY_SECONDS });
  });
  for (let current = 0; current < sets.length; current++) {
    const key = currentKey(sets[current]!.set).name;
    // A node on this set issues tickets under the key until it applies the next one.
    const retired = sets[current + 1]?.last;
    const dropped = sets.findIndex((entry, index) => index > current && !entry.set.keys.some((candidate) => candidate.name === key));
    if (retired === undefined || dropped === -1) continue;
    if (sets[dropped]!.first - retired < policy.ticketLifetimeSeconds) {
      return `key of generation ${current + 1} retired at ${retired} s and dropped at ${sets[dropped]!.first} s, ${policy.ticketLifetimeSeconds} s of lifetime`;
    }
  }
  return undefined;
}

const intervals = fc.constantFrom(30 * MINUTE, 45 * MINUTE, HOUR, 90 * MINUTE, 2 * HOUR, 4 * HOUR, 6 * HOUR, 8 * HOUR, 10 * HOUR, 12 * HOUR, 24 * HOUR, 36 * HOUR, 48 * HOUR);
const lifetimes = fc.integer({ min: 1, max: 7 * 24 * 4 }).map((quarters) => quarters * 15 * MINUTE);
const rotations = fc.array(fc.record({ start: fc.double({ min: 0, max: 1, noNaN: true }), apply: fc.double({ min: 0, max: 1, noNaN: true }) }), { minLength: 4, maxLength: 40 });

describe('retention under the schedule\'s jitter', () => {
  it('puts each interval on the schedule that keeps it evenly, and says how late a rotation may take effect', () => {
    expect(rotationScheduleFor(12 * HOUR)).toEqual({ kind: 'secrets-manager', expression: 'rate(12 hours)', duration: '1h', latenessSeconds: SECRETS_MANAGER_WINDOW_SECONDS + ROTATION_APPLY_SECONDS });
    expect(rotationScheduleFor(24 * HOUR)).toMatchObject({ kind: 'secrets-manager', expression: 'rate(1 day)' });
    expect(rotationScheduleFor(48 * HOUR)).toMatchObject({ kind: 'secrets-manager', expression: 'rate(2 days)' });
    expect(rotationScheduleFor(10 * HOUR)).toEqual({ kind: 'scheduler', expression: 'rate(10 hours)', latenessSeconds: SCHEDULER_PRECISION_SECONDS + SCHEDULER_MAX_EVENT_AGE_SECONDS + ROTATION_APPLY_SECONDS });
    expect(rotationScheduleFor(36 * HOUR)).toMatchObject({ kind: 'scheduler', expression: 'rate(36 hours)' });
    expect(rotationScheduleFor(90 * MINUTE)).toMatchObject({ kind: 'scheduler', expression: 'rate(90 minutes)' });
  });

  it('Secrets Manager\'s own schedule from 4 hours (its shortest), in whole hours that divide a day; late by its 1-hour window and 15 minutes to apply, or the Scheduler\'s minute, 5 minutes of retries and 15 to apply', () => {
    expect(rotationScheduleFor(4 * HOUR)).toEqual({ kind: 'secrets-manager', expression: 'rate(4 hours)', duration: '1h', latenessSeconds: 4500 });
    expect(rotationScheduleFor(8 * HOUR)).toMatchObject({ kind: 'secrets-manager', expression: 'rate(8 hours)' });
    expect(rotationScheduleFor(2 * HOUR)).toEqual({ kind: 'scheduler', expression: 'rate(2 hours)', latenessSeconds: 1260 });
    // 4 h 48 min divides a day five times, but Secrets Manager's rate() takes hours or days.
    expect(rotationScheduleFor(288 * MINUTE)).toEqual({ kind: 'scheduler', expression: 'rate(288 minutes)', latenessSeconds: 1260 });
  });

  it.each([0, -HOUR, 90, 1.5, Number.NaN])('refuses an interval of %s seconds: not a whole number of minutes', (seconds) => {
    expect(() => rotationScheduleFor(seconds)).toThrow(`rotation interval must be a whole number of minutes (got ${seconds} seconds)`);
  });

  it('no ticket younger than its lifetime is ever refused, for every schedule, flavor and jitter the policy accepts', () => {
    let checked = 0;
    fc.assert(
      fc.property(intervals, lifetimes, fc.constantFrom(...SERVER_FLAVORS), rotations, (interval, lifetime, flavor, sequence) => {
        const schedule = rotationScheduleFor(interval);
        const policy: RotationPolicy = { rotationIntervalSeconds: interval, ticketLifetimeSeconds: lifetime, keyLength: 80, flavor, rotationLatenessSeconds: schedule.latenessSeconds };
        try {
          previousKeysToKeep(policy);
        } catch (error) {
          if (error instanceof PolicyError) return; // refused at synth: nothing is scheduled
          throw error;
        }
        checked += 1;
        const startWindow = schedule.kind === 'secrets-manager' ? SECRETS_MANAGER_WINDOW_SECONDS : SCHEDULER_PRECISION_SECONDS + SCHEDULER_MAX_EVENT_AGE_SECONDS;
        expect(tooEarlyDrop(policy, sequence, startWindow)).toBeUndefined();
      }),
      { numRuns: 600 },
    );
    expect(checked).toBeGreaterThan(200);
  });

  it('would refuse such tickets if retention ignored the lateness (why the policy counts it)', () => {
    // Rotating every 12 hours with 12 hours of lifetime: one previous key on an exact grid; with the window, two.
    const exact: RotationPolicy = { rotationIntervalSeconds: 12 * HOUR, ticketLifetimeSeconds: 12 * HOUR, keyLength: 80 };
    expect(previousKeysToKeep(exact)).toBe(1);
    expect(previousKeysToKeep({ ...exact, rotationLatenessSeconds: rotationScheduleFor(12 * HOUR).latenessSeconds })).toBe(2);
    const lateThenEarly: Rotation[] = [{ start: 0, apply: 0 }, { start: 1, apply: 1 }, { start: 0, apply: 0 }, { start: 0, apply: 0 }];
    expect(tooEarlyDrop(exact, lateThenEarly, SECRETS_MANAGER_WINDOW_SECONDS)).toMatch(/key of generation 2 retired at \d+ s and dropped at \d+ s/);
    expect(tooEarlyDrop({ ...exact, rotationLatenessSeconds: rotationScheduleFor(12 * HOUR).latenessSeconds }, lateThenEarly, SECRETS_MANAGER_WINDOW_SECONDS)).toBeUndefined();
  });
});
