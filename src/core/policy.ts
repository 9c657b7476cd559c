import {
  DEFAULT_KEY_LENGTH,
  KEY_LENGTHS,
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
/** The shortest interval for a server that holds one key: each rotation costs every client a full handshake. */
const MIN_SINGLE_KEY_ROTATION_INTERVAL_SECONDS = 3600;

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

/** Whether a ticket outlives the rotation after it: the server holds a previous key (Apache holds only the current one). */
export function ticketsSurviveRotation(flavor: ServerFlavor = DEFAULT_FLAVOR): boolean {
  return (FLAVORS[flavor].keyCapacity ?? Infinity) >= 3;
}

/** The key lengths a flavor's server reads: all of them, unless the flavor names its own (Apache: 48). */
export function readableKeyLengths(flavor: ServerFlavor = DEFAULT_FLAVOR): readonly number[] {
  return FLAVORS[flavor].keyLengths ?? KEY_LENGTHS;
}

/** The key length a flavor's set gets when none is given: the first it reads (Apache's 48 bytes), else the default. */
export function defaultKeyLength(flavor: ServerFlavor = DEFAULT_FLAVOR): KeyLength {
  return (FLAVORS[flavor].keyLengths?.[0] as KeyLength | undefined) ?? DEFAULT_KEY_LENGTH;
}

/**
 * What each rotation costs clients, when it costs them anything: on a server that holds one
 * key, every ticket dies with it, so each client's next connection is a full handshake, on
 * every node at once. Undefined for servers that keep the keys before.
 */
export function rotationCost(policy: Pick<RotationPolicy, 'flavor' | 'rotationIntervalSeconds'>): string | undefined {
  const flavor = policy.flavor ?? DEFAULT_FLAVOR;
  if (ticketsSurviveRotation(flavor)) return undefined;
  return (
    `${flavor} holds one ticket key, with no previous or next key beside it: every rotation costs each client a full ` +
    `handshake, on every node at once, and while the nodes switch one by one, one more at each connection that meets a ` +
    `node on the other key (tickets still resume across nodes between rotations). Rotating every ` +
    `${formatDuration(policy.rotationIntervalSeconds)}, clients pay it ` +
    `once every ${formatDuration(policy.rotationIntervalSeconds)}; a longer interval makes it rarer.`
  );
}

/**
 * The ticket lifetime when none is given: 12 hours, or less when the server's keys cannot cover
 * that at this interval (HAProxy's three): the longest whole number of hours they cover, or of
 * minutes under an hour. A server that holds one key covers one interval. (An interval no
 * longer than the lateness covers nothing: the policy refuses it, saying so.)
 */
export function defaultTicketLifetimeSeconds(policy: Omit<RotationPolicy, 'ticketLifetimeSeconds'>): number {
  const flavor = policy.flavor ?? DEFAULT_FLAVOR;
  const capacity = FLAVORS[flavor].keyCapacity ?? keySetCapacity(policy.keyLength);
  const covered = ticketsSurviveRotation(flavor)
    ? policy.rotationIntervalSeconds * (capacity - 2) - (policy.rotationLatenessSeconds ?? 0)
    : policy.rotationIntervalSeconds;
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
  const flavor = policy.flavor ?? DEFAULT_FLAVOR;
  const lengths = readableKeyLengths(flavor);
  if (!lengths.includes(policy.keyLength)) {
    throw new PolicyError(`${flavor} reads ${lengths.join(' or ')}-byte ticket keys, not ${policy.keyLength}-byte ones: set the key length to ${lengths[0]}`);
  }
  if (!ticketsSurviveRotation(flavor)) {
    if (interval < MIN_SINGLE_KEY_ROTATION_INTERVAL_SECONDS) {
      throw new PolicyError(
        `rotation interval ${formatDuration(interval)} is too short for ${flavor}: it holds one ticket key, so every rotation costs ` +
          `each client one full handshake, on every node at once. Rotate no more often than every ` +
          `${formatDuration(MIN_SINGLE_KEY_ROTATION_INTERVAL_SECONDS)}; 12h or more keeps the cost rare.`,
      );
    }
    if (lifetime > interval) {
      throw new PolicyError(
        `ticket lifetime ${formatDuration(lifetime)} is longer than the rotation interval ${formatDuration(interval)}, but ${flavor} ` +
          `holds one ticket key: no ticket outlives the next rotation. Shorten the ticket lifetime to at most ${formatDuration(interval)}.`,
      );
    }
    // The set's own minimum: the nodes load only its current key.
    return 1;
  }
  const needed = Math.ceil((lifetime + lateness) / interval);
  const setCapacity = keySetCapacity(policy.keyLength);
  const capacity = Math.min(FLAVORS[flavor].keyCapacity ?? Infinity, setCapacity);
  const serverBinds = capacity < setCapacity;
  const maxPrevious = capacity - 2;
  if (needed > maxPrevious) {
    const limit = serverBinds
      ? `${flavor} holds at most ${capacity} keys (${maxPrevious} previous, current and next)`
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
