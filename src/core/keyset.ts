import { randomBytes } from 'node:crypto';

/**
 * The key set: the one document that Secrets Manager (or the local store) holds and every
 * node loads. Keys are in the order servers load them: current (encrypts), next
 * (decrypt-only, published one rotation early), then previous keys, newest first.
 */
export const KEY_SET_FORMAT = 'tls-ticket-keyset';
export const KEY_SET_VERSION = 1;
export const KEY_LENGTHS = [80, 48] as const;
export const DEFAULT_KEY_LENGTH: KeyLength = 80;
/** Secrets Manager's limit on a secret value, which the key set must fit in. */
export const SECRET_VALUE_MAX_BYTES = 65_536;
/** Both nginx and HAProxy name a key by its first 16 bytes. */
export const KEY_NAME_BYTES = 16;

/**
 * What the secret holds before its first rotation: no keys, so that CloudFormation never
 * carries key material. The first rotation replaces it with generation 1.
 */
export const EMPTY_KEY_SET_PLACEHOLDER = JSON.stringify({
  format: KEY_SET_FORMAT,
  version: KEY_SET_VERSION,
  note: 'no keys yet: the first rotation writes generation 1',
});

export type KeyLength = (typeof KEY_LENGTHS)[number];
export type KeyState = 'current' | 'next' | 'previous';

export interface TicketKey {
  /** Hex of the first 16 bytes of the material: what servers and tickets call the key. */
  name: string;
  state: KeyState;
  createdAt: string;
  /** Base64 of the raw key bytes. Never logged, printed or put in an error message. */
  material: string;
}

export interface KeySet {
  format: typeof KEY_SET_FORMAT;
  version: typeof KEY_SET_VERSION;
  generation: number;
  keyLength: KeyLength;
  keys: TicketKey[];
}

/** What may be shown about a key set: everything but the material. */
export interface KeySetSummary {
  generation: number;
  keyLength: KeyLength;
  keys: { name: string; state: KeyState; createdAt: string }[];
}

export class KeySetError extends Error {
  override name = 'KeySetError';
}

export type RandomSource = (size: number) => Buffer;

export interface KeyFactoryOptions {
  now?: () => Date;
  random?: RandomSource;
}

const KEY_FIELDS = ['name', 'state', 'createdAt', 'material'] as const;
const SET_FIELDS = ['format', 'version', 'generation', 'keyLength', 'keys'] as const;
const STRICT_BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const ISO_TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$/;
const WHAT_TO_DO = 'use a key set written by `ticket-keys init`/`rotate` or by the rotation function';

export function keyName(material: Buffer): string {
  return material.subarray(0, KEY_NAME_BYTES).toString('hex');
}

export function isKeyLength(value: unknown): value is KeyLength {
  return (KEY_LENGTHS as readonly unknown[]).includes(value);
}

function freshKey(state: KeyState, keyLength: KeyLength, options: KeyFactoryOptions): TicketKey {
  const material = (options.random ?? randomBytes)(keyLength);
  if (material.length !== keyLength) {
    throw new KeySetError(`random source returned ${material.length} bytes, expected ${keyLength}`);
  }
  return {
    name: keyName(material),
    state,
    createdAt: (options.now ?? (() => new Date()))().toISOString(),
    material: material.toString('base64'),
  };
}

/** Generation 1: a current and a next key, nothing retained. */
export function createKeySet(keyLength: KeyLength = DEFAULT_KEY_LENGTH, options: KeyFactoryOptions = {}): KeySet {
  if (!isKeyLength(keyLength)) {
    throw new KeySetError(`key length ${String(keyLength)} is not supported: choose 80 (the default) or 48 bytes`);
  }
  return {
    format: KEY_SET_FORMAT,
    version: KEY_SET_VERSION,
    generation: 1,
    keyLength,
    keys: [freshKey('current', keyLength, options), freshKey('next', keyLength, options)],
  };
}

export function currentKey(set: KeySet): TicketKey {
  return set.keys[0] as TicketKey;
}

export function nextKey(set: KeySet): TicketKey {
  return set.keys[1] as TicketKey;
}

export function previousKeys(set: KeySet): TicketKey[] {
  return set.keys.slice(2);
}

/**
 * g -> g+1: the old next encrypts, a fresh key is published as next, and the old current
 * heads the previous keys, of which `previousKeysToKeep` are kept.
 */
export function rotateKeySet(set: KeySet, previousKeysToKeep: number, options: KeyFactoryOptions = {}): KeySet {
  if (!Number.isInteger(previousKeysToKeep) || previousKeysToKeep < 1) {
    throw new KeySetError(
      `previous keys to keep must be a whole number of at least 1 (got ${previousKeysToKeep}): ` +
        'without the old current key, tickets issued just before the rotation could not resume',
    );
  }
  const previous = [currentKey(set), ...previousKeys(set)]
    .slice(0, previousKeysToKeep)
    .map((key) => ({ ...key, state: 'previous' as const }));
  return {
    ...set,
    generation: set.generation + 1,
    keys: [{ ...nextKey(set), state: 'current' }, freshKey('next', set.keyLength, options), ...previous],
  };
}

/** A key is suspected stolen: every key is replaced and nothing is retained. */
export function revokeKeySet(set: KeySet, options: KeyFactoryOptions = {}): KeySet {
  const fresh = createKeySet(set.keyLength, options);
  return { ...fresh, generation: set.generation + 1 };
}

export function serializeKeySet(set: KeySet): string {
  return JSON.stringify({
    format: set.format,
    version: set.version,
    generation: set.generation,
    keyLength: set.keyLength,
    keys: set.keys.map((key) => ({ name: key.name, state: key.state, createdAt: key.createdAt, material: key.material })),
  });
}

export function summarizeKeySet(set: KeySet): KeySetSummary {
  return {
    generation: set.generation,
    keyLength: set.keyLength,
    keys: set.keys.map(({ name, state, createdAt }) => ({ name, state, createdAt })),
  };
}

export function parseKeySet(text: string): KeySet {
  if (text.trim() === '') throw new KeySetError('key set is empty: give the key set JSON on standard input or as a file');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    // The parser's own message quotes the input, which may hold key material: never pass it on.
    throw new KeySetError(`key set is not valid JSON: ${WHAT_TO_DO}`);
  }
  const repeated = repeatedMember(text);
  if (repeated !== undefined) {
    throw new KeySetError(`key set gives the member ${JSON.stringify([...repeated].slice(0, 32).join(''))} twice in one object: parsers disagree on which one counts; ${WHAT_TO_DO}`);
  }
  return validateKeySet(value);
}

/**
 * The first member name that an object of `text` (valid JSON) gives a second time, in the order
 * of the text. JSON.parse keeps the last one silently; another parser may keep the first. The
 * applier's parser (applier/ticket_keys/keyset.py) scans the same way.
 */
function repeatedMember(text: string): string | undefined {
  const open: (Set<string> | undefined)[] = [];
  for (let index = 0; index < text.length; index += 1) {
    const char = text[index];
    if (char === '{') open.push(new Set());
    else if (char === '[') open.push(undefined);
    else if (char === '}' || char === ']') open.pop();
    else if (char === '"') {
      let end = index + 1;
      while (text[end] !== '"') end += text[end] === '\\' ? 2 : 1;
      const token = text.slice(index, end + 1);
      index = end;
      let next = end + 1;
      while (' \t\n\r'.includes(text[next] ?? '.')) next += 1;
      const members = open.at(-1);
      if (text[next] === ':' && members !== undefined) {
        const name = JSON.parse(token) as string;
        if (members.has(name)) return name;
        members.add(name);
      }
    }
  }
  return undefined;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function refuseUnknownFields(value: Record<string, unknown>, allowed: readonly string[], where: string): void {
  const unknown = Object.keys(value).filter((field) => !allowed.includes(field));
  if (unknown.length > 0) {
    throw new KeySetError(`${where} has unknown field(s) ${unknown.join(', ')}: ${WHAT_TO_DO}`);
  }
}

/** An ISO 8601 UTC time that names a real instant: Date.parse would roll February 30 over to March. */
function isUtcTimestamp(text: string): boolean {
  if (!ISO_TIMESTAMP.test(text)) return false;
  const instant = Date.parse(text);
  return !Number.isNaN(instant) && new Date(instant).toISOString().slice(0, 19) === text.slice(0, 19);
}

function expectedState(index: number): KeyState {
  return index === 0 ? 'current' : index === 1 ? 'next' : 'previous';
}

function validateKey(value: unknown, index: number, keyLength: KeyLength): TicketKey {
  const where = `key ${index + 1}`;
  if (!isPlainObject(value)) throw new KeySetError(`${where} is not an object: ${WHAT_TO_DO}`);
  refuseUnknownFields(value, KEY_FIELDS, where);
  for (const field of KEY_FIELDS) {
    if (typeof value[field] !== 'string') {
      throw new KeySetError(`${where} has no "${field}" string: ${WHAT_TO_DO}`);
    }
  }
  const { name, state, createdAt, material } = value as Record<(typeof KEY_FIELDS)[number], string>;
  if (state !== expectedState(index)) {
    const order = 'keys must be ordered current, next, then previous keys';
    if (index === 0) throw new KeySetError(`key set has no current key first (key 1 is "${state}"): ${order}`);
    if (index === 1) throw new KeySetError(`key set has no next key second (key 2 is "${state}"): ${order}`);
    throw new KeySetError(`${where} has state "${state}" where "previous" belongs: ${order}`);
  }
  if (!isUtcTimestamp(createdAt)) {
    throw new KeySetError(`${where} (${name}) has createdAt that is not an ISO 8601 UTC time: ${WHAT_TO_DO}`);
  }
  if (material.length % 4 !== 0 || !STRICT_BASE64.test(material)) {
    throw new KeySetError(`${where} (${name}) material is not valid base64: ${WHAT_TO_DO}`);
  }
  const bytes = Buffer.from(material, 'base64');
  if (bytes.toString('base64') !== material) {
    throw new KeySetError(`${where} (${name}) material is not canonical base64 (its last character sets bits past the end): ${WHAT_TO_DO}`);
  }
  if (bytes.length !== keyLength) {
    throw new KeySetError(
      `${where} (${name}) is ${bytes.length} bytes but the set's keyLength is ${keyLength}: every key must have the same length`,
    );
  }
  if (name !== keyName(bytes)) {
    throw new KeySetError(`${where} name ${name} does not match its material (a name is the hex of the first 16 bytes): ${WHAT_TO_DO}`);
  }
  return { name, state: state as KeyState, createdAt, material };
}

function isGeneration(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 1;
}

export function validateKeySet(value: unknown): KeySet {
  if (!isPlainObject(value)) throw new KeySetError(`key set is not a JSON object: ${WHAT_TO_DO}`);
  if (value.format !== KEY_SET_FORMAT) {
    throw new KeySetError(`key set format ${JSON.stringify(value.format ?? null)} is unknown: expected "${KEY_SET_FORMAT}"`);
  }
  if (value.version !== KEY_SET_VERSION) {
    throw new KeySetError(
      `key set version ${JSON.stringify(value.version ?? null)} is not supported: this tool reads version ${KEY_SET_VERSION}; upgrade the tool or rewrite the set`,
    );
  }
  refuseUnknownFields(value, SET_FIELDS, 'key set');
  const { generation, keyLength, keys } = value;
  if (!isGeneration(generation)) {
    throw new KeySetError(`key set generation ${JSON.stringify(generation ?? null)} is not a positive integer: ${WHAT_TO_DO}`);
  }
  if (!isKeyLength(keyLength)) {
    throw new KeySetError(`key set keyLength ${JSON.stringify(keyLength ?? null)} is not supported: it must be 80 or 48`);
  }
  if (!Array.isArray(keys)) throw new KeySetError(`key set has no "keys" array: ${WHAT_TO_DO}`);
  if (keys.length === 0) throw new KeySetError('key set has no current key: a set needs a current and a next key');
  if (keys.length === 1) throw new KeySetError('key set has no next key: a set needs a current and a next key');
  const validated = keys.map((key, index) => validateKey(key, index, keyLength));
  const seen = new Set<string>();
  for (const key of validated) {
    if (seen.has(key.name)) {
      throw new KeySetError(`key set holds key ${key.name} twice: every key must be distinct`);
    }
    seen.add(key.name);
  }
  return { format: KEY_SET_FORMAT, version: KEY_SET_VERSION, generation, keyLength, keys: validated };
}
