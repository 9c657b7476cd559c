import {
  KEY_SET_FORMAT,
  KEY_SET_VERSION,
  SECRET_VALUE_MAX_BYTES,
  serializeKeySet,
  type KeyLength,
  type KeySet,
} from './keyset.js';
import { DEFAULT_FLAVOR, FLAVORS, type ServerFlavor } from '../flavors/index.js';

/** RFC 8446 4.6.1: a server must not advertise a ticket lifetime above seven days. */
export const MAX_TICKET_LIFETIME_SECONDS = 7 * 24 * 3600;
export const DEFAULT_ROTATION_INTERVAL_SECONDS = 12 * 3600;
export const DEFAULT_TICKET_LIFETIME_SECONDS = 12 * 3600;

export interface RotationPolicy {
  rotationIntervalSeconds: number;
  ticketLifetimeSeconds: number;
  keyLength: KeyLength;
  /** The server the nodes run; its key capacity bounds retention. @default nginx */
  flavor?: ServerFlavor;
  /**
   * How much later than its schedule a rotation may take effect (the schedule's window, and the
   * time to apply): two rotations may then be this much closer than the interval. 0 for
   * rotations run by hand. See rotationScheduleFor. @default 0
   */
  rotationLatenessSeconds?: number;
}

export class PolicyError extends Error {
  override name = 'PolicyError';
}

const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

/** "90s", "30m", "12h", "7d", or their combinations such as "1h30m". */
export function parseDuration(text: string, what: string): number {
  const trimmed = text.trim();
  const parts = [...trimmed.matchAll(/(\d+)([smhd])/g)];
  if (trimmed === '' || parts.map((part) => part[0]).join('') !== trimmed) {
    throw new PolicyError(`${what} "${text}" is not a duration: write it like 90s, 30m, 12h, 7d or 1h30m`);
  }
  const seconds = parts.reduce((total, [, amount, unit]) => total + Number(amount) * (UNIT_SECONDS[unit as string] as number), 0);
  if (seconds <= 0) throw new PolicyError(`${what} "${text}" must be longer than zero`);
  return seconds;
}

export function formatDuration(totalSeconds: number): string {
  const parts: string[] = [];
  let rest = totalSeconds;
  for (const [unit, size] of [['d', 86400], ['h', 3600], ['m', 60], ['s', 1]] as const) {
    const amount = Math.floor(rest / size);
    if (amount > 0) parts.push(`${amount}${unit}`);
    rest -= amount * size;
  }
  return parts.length > 0 ? parts.join('') : '0s';
}

/** The serialized size of a key set with `keyCount` keys, counted with a generation of 15 digits. */
export function keySetBytes(keyLength: KeyLength, keyCount: number): number {
  const key = { name: '0'.repeat(32), state: 'previous' as const, createdAt: new Date(0).toISOString(), material: Buffer.alloc(keyLength).toString('base64') };
  const set = (count: number): KeySet => ({
    format: KEY_SET_FORMAT,
    version: KEY_SET_VERSION,
    generation: 999_999_999_999_999,
    keyLength,
    keys: Array.from({ length: count }, () => key),
  });
  const two = Buffer.byteLength(serializeKeySet(set(2)));
  const perKey = Buffer.byteLength(serializeKeySet(set(3))) - two;
  return two + (keyCount - 2) * perKey;
}

/** The most keys a key set can hold and still fit in one Secrets Manager secret value. */
export function keySetCapacity(keyLength: KeyLength): number {
  let count = 2;
  while (keySetBytes(keyLength, count + 1) <= SECRET_VALUE_MAX_BYTES) count += 1;
  return count;
}

/**
 * The ticket lifetime when none is given: 12 hours, or less when the server's keys cannot cover
 * that at this interval (HAProxy's three): the longest whole number of hours they cover, or of
 * minutes under an hour. (An interval no longer than the lateness covers nothing: the policy
 * refuses it, saying so.)
 */
export function defaultTicketLifetimeSeconds(policy: Omit<RotationPolicy, 'ticketLifetimeSeconds'>): number {
  const capacity = FLAVORS[policy.flavor ?? DEFAULT_FLAVOR].keyCapacity ?? keySetCapacity(policy.keyLength);
  const covered = policy.rotationIntervalSeconds * (capacity - 2) - (policy.rotationLatenessSeconds ?? 0);
  const unit = covered >= 3600 ? 3600 : 60;
  return Math.min(DEFAULT_TICKET_LIFETIME_SECONDS, Math.max(60, Math.floor(covered / unit) * unit));
}

/**
 * How many previous keys a rotation keeps so that a ticket issued just before a key stops
 * encrypting stays decryptable for its whole lifetime. Scheduled rotations start on a fixed grid
 * (one per interval) and may take effect up to `lateness` after their grid time, so a key
 * retired late and dropped early is still kept R intervals less the lateness:
 * R = ceil((ticketLifetime + lateness) / rotationInterval).
 * Throws when no key set that the server and the secret can hold achieves that.
 */
export function previousKeysToKeep(policy: RotationPolicy): number {
  const { rotationIntervalSeconds: interval, ticketLifetimeSeconds: lifetime } = policy;
  const lateness = policy.rotationLatenessSeconds ?? 0;
  if (!Number.isFinite(interval) || interval <= 0) {
    throw new PolicyError(`rotation interval must be longer than zero (got ${interval} seconds)`);
  }
  if (!Number.isFinite(lifetime) || lifetime <= 0) {
    throw new PolicyError(`ticket lifetime must be longer than zero (got ${lifetime} seconds)`);
  }
  if (lifetime > MAX_TICKET_LIFETIME_SECONDS) {
    throw new PolicyError(
      `ticket lifetime ${formatDuration(lifetime)} is longer than TLS allows (RFC 8446: at most 7d): shorten the ticket lifetime`,
    );
  }
  if (interval <= lateness) {
    throw new PolicyError(
      `rotation interval ${formatDuration(interval)} is not longer than how late a scheduled rotation may take effect ` +
        `(${formatDuration(lateness)}: its window and the time to apply it): rotate less often than every ${formatDuration(lateness)}`,
    );
  }
  const needed = Math.ceil((lifetime + lateness) / interval);
  const setCapacity = keySetCapacity(policy.keyLength);
  const flavor = policy.flavor ?? DEFAULT_FLAVOR;
  const capacity = Math.min(FLAVORS[flavor].keyCapacity ?? Infinity, setCapacity);
  const serverBinds = capacity < setCapacity;
  const maxPrevious = capacity - 2;
  if (needed > maxPrevious) {
    const limit = serverBinds
      ? `${flavor} holds at most ${capacity} keys (previous, current, next)`
      : `a key set of ${policy.keyLength}-byte keys holds at most ${capacity} keys (Secrets Manager's ${SECRET_VALUE_MAX_BYTES}-byte limit)`;
    const late = lateness > 0 ? ` (each rotation taking effect up to ${formatDuration(lateness)} after its scheduled time)` : '';
    throw new PolicyError(
      `rotation interval too short for client session lifetime: rotating every ${formatDuration(interval)}${late} with a ` +
        `ticket lifetime of ${formatDuration(lifetime)} needs ${needed} previous keys plus current and next, but ${limit}. ` +
        `Rotate no more often than every ${formatDuration(Math.ceil((lifetime + lateness) / maxPrevious))}, ` +
        `or shorten the ticket lifetime to at most ${formatDuration(interval * maxPrevious - lateness)}.`,
    );
  }
  return needed;
}
