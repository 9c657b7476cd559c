import { serializeKeySet, type KeySet } from '../../src/core/keyset.js';

const BASE64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

function variant(set: KeySet, change: (doc: Record<string, unknown> & { keys: Record<string, unknown>[] }) => void): string {
  const doc = JSON.parse(serializeKeySet(set));
  change(doc);
  return JSON.stringify(doc);
}

/** Broken key sets derived from a valid one (of generation 2 with a previous key), each with the message that must refuse it. */
export function malformedKeySets(gen2: KeySet): [string, () => string, RegExp][] {
  return [
    ['empty input', () => '', /key set is empty/],
    ['truncated JSON', () => serializeKeySet(gen2).slice(0, 60), /not valid JSON/],
    ['a JSON array', () => '[]', /not a JSON object/],
    ['an unknown format', () => variant(gen2, (doc) => (doc.format = 'nginx-keys')), /format "nginx-keys" is unknown/],
    ['an unknown version', () => variant(gen2, (doc) => (doc.version = 2)), /version 2 is not supported/],
    ['generation zero', () => variant(gen2, (doc) => (doc.generation = 0)), /generation 0 is not a positive integer/],
    ['a fractional generation', () => variant(gen2, (doc) => (doc.generation = 2.5)), /generation 2.5 is not a positive integer/],
    ['a generation as a string', () => variant(gen2, (doc) => (doc.generation = '2')), /generation "2" is not a positive integer/],
    ['an unsupported key length', () => variant(gen2, (doc) => (doc.keyLength = 64)), /keyLength 64 is not supported/],
    ['48-byte keys in an 80-byte set', () => variant(gen2, (doc) => (doc.keyLength = 48)), /key 1 \(\w+\) is 80 bytes but the set's keyLength is 48/],
    ['mixed key lengths', () => variant(gen2, (doc) => ((doc.keys[1] as Record<string, unknown>).material = Buffer.from(gen2.keys[1]!.material, 'base64').subarray(0, 48).toString('base64'))), /key 2 \(\w+\) is 48 bytes/],
    ['bad base64', () => variant(gen2, (doc) => ((doc.keys[0] as Record<string, unknown>).material = '!'.repeat(108))), /key 1 \(\w+\) material is not valid base64/],
    ['base64 with a line break', () => variant(gen2, (doc) => ((doc.keys[1] as Record<string, unknown>).material = `${gen2.keys[1]!.material.slice(0, 50)}\n${gen2.keys[1]!.material.slice(50)}`)), /key 2 \(\w+\) material is not valid base64/],
    ['a duplicate key', () => variant(gen2, (doc) => doc.keys.push({ ...doc.keys[0], state: 'previous' })), /holds key \w+ twice/],
    ['a name that does not match its material', () => variant(gen2, (doc) => ((doc.keys[0] as Record<string, unknown>).name = '0'.repeat(32))), /key 1 name 0{32} does not match its material/],
    ['no current key first', () => variant(gen2, (doc) => doc.keys.shift()), /no current key first \(key 1 is "next"\)/],
    ['no next key', () => variant(gen2, (doc) => doc.keys.splice(1)), /has no next key/],
    ['no keys at all', () => variant(gen2, (doc) => (doc.keys = [])), /has no current key: a set needs/],
    ['keys out of order', () => variant(gen2, (doc) => ((doc.keys[2] as Record<string, unknown>).state = 'next')), /key 3 has state "next" where "previous" belongs/],
    ['a key without material', () => variant(gen2, (doc) => delete (doc.keys[1] as Record<string, unknown>).material), /key 2 has no "material" string/],
    ['a bad creation time', () => variant(gen2, (doc) => ((doc.keys[0] as Record<string, unknown>).createdAt = 'yesterday')), /key 1 \(\w+\) has createdAt that is not an ISO 8601/],
    ['an unknown field', () => variant(gen2, (doc) => (doc.keys_v2 = [])), /unknown field\(s\) keys_v2/],
    ['a key that is not an object', () => variant(gen2, (doc) => ((doc.keys as unknown[])[1] = 'next')), /key 2 is not an object/],
    ['a key with an unknown field', () => variant(gen2, (doc) => ((doc.keys[0] as Record<string, unknown>).expires = 'never')), /key 1 has unknown field\(s\) expires/],
    ['a second key that is not next', () => variant(gen2, (doc) => ((doc.keys[1] as Record<string, unknown>).state = 'previous')), /no next key second \(key 2 is "previous"\)/],
    ['February 30', () => variant(gen2, (doc) => ((doc.keys[1] as Record<string, unknown>).createdAt = '2026-02-30T10:00:00Z')), /key 2 \(\w+\) has createdAt that is not an ISO 8601/],
    ['hour 25', () => variant(gen2, (doc) => ((doc.keys[2] as Record<string, unknown>).createdAt = '2026-02-28T25:00:00.000Z')), /key 3 \(\w+\) has createdAt that is not an ISO 8601/],
    ['base64 of a length no multiple of 4', () => variant(gen2, (doc) => ((doc.keys[2] as Record<string, unknown>).material = gen2.keys[2]!.material.replace(/=$/, ''))), /key 3 \(\w+\) material is not valid base64/],
    // 80 bytes end in a group of two: its last character carries 2 bits past the end, which must be zero.
    ['base64 with bits past the end', () => variant(gen2, (doc) => ((doc.keys[0] as Record<string, unknown>).material = gen2.keys[0]!.material.replace(/.=$/, (end) => `${BASE64[BASE64.indexOf(end[0]!) ^ 1]}=`))), /key 1 \(\w+\) material is not canonical base64 \(its last character sets bits past the end\)/],
    ['a generation past 2^53', () => variant(gen2, (doc) => (doc.generation = 2 ** 53)), /generation 9007199254740992 is not a positive integer/],
    ['a generation of true', () => variant(gen2, (doc) => (doc.generation = true)), /generation true is not a positive integer/],
    ['keys that are not an array', () => variant(gen2, (doc) => ((doc as Record<string, unknown>).keys = {})), /has no "keys" array/],
    ['a JSON string', () => '"a key set"', /not a JSON object/],
    ['JSON null', () => 'null', /not a JSON object/],
    ['only white space', () => ' \n\t ', /key set is empty/],
    ['a key that is null', () => variant(gen2, (doc) => ((doc.keys as unknown[])[0] = null)), /key 1 is not an object/],
    ['two unknown fields', () => variant(gen2, (doc) => Object.assign(doc, { expires: 'never', owner: 'ops' })), /key set has unknown field\(s\) expires, owner: /],
    ['a creation time with an offset, not Z', () => variant(gen2, (doc) => ((doc.keys[1] as Record<string, unknown>).createdAt = '2026-02-28T10:00:00.000+00:00')), /key 2 \(\w+\) has createdAt that is not an ISO 8601/],
    // JSON.parse and Python's json both keep the last of two members of one name: two readers of other parsers could read other values.
    ['a member given twice', () => serializeKeySet(gen2).replace('{', '{"generation":1,'), /key set gives the member "generation" twice in one object: /],
    ["a key's member given twice", () => serializeKeySet(gen2).replace(/"state":"next"/, '"state":"previous","state":"next"'), /key set gives the member "state" twice in one object: /],
    // Python's json reads NaN and Infinity; they are no JSON, and JSON.parse refuses them.
    ['NaN, which is no JSON', () => serializeKeySet(gen2).replace(/"generation":\d+/, '"generation":NaN'), /not valid JSON/],
    ['a creation time with ten fraction digits', () => variant(gen2, (doc) => ((doc.keys[0] as Record<string, unknown>).createdAt = '2026-02-28T10:00:00.1234567891Z')), /key 1 \(\w+\) has createdAt that is not an ISO 8601/],
  ];
}
