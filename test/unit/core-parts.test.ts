// The small pure parts of the core, pinned: the key names document, the seeded generator the
// fleet's random orders come from, how an applier summary becomes a node's result or status, and
// the quoting of one word for bash.
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { reloaded, resultFromSummary, statusFromSummary, type ApplierSummary } from '../../src/core/applier-summary.js';
import { parseKeyNames } from '../../src/core/key-names.js';
import { seededRandom, shuffled } from '../../src/core/seeded-random.js';
import { shellQuote } from '../../src/core/shell.js';

describe('the key names document', () => {
  const current = { versionId: 'v-1', generation: 1, currentKey: 'a'.repeat(32) };
  const pending = { versionId: 'v-2', generation: 2, currentKey: 'b'.repeat(32) };

  it('reads both slots, and nothing else', () => {
    expect(parseKeyNames(JSON.stringify({ current, pending, extra: 1 }))).toEqual({ current, pending });
    expect(parseKeyNames(JSON.stringify({ current: { ...current, keys: ['x'] } }))).toEqual({ current });
  });

  it('drops a slot that is not a well-formed entry, and reads anything but a JSON object as an empty board', () => {
    for (const broken of [
      { ...current, versionId: 7 },
      { ...current, generation: 1.5 },
      { ...current, generation: '1' },
      { ...current, currentKey: 'A'.repeat(32) },
      { ...current, currentKey: 'a'.repeat(31) },
      { ...current, currentKey: 5 },
      { ...current, currentKey: ['a'.repeat(32)] },
      { ...current, currentKey: 'a'.repeat(33) },
      null,
      'v-1',
    ]) {
      expect(parseKeyNames(JSON.stringify({ current: broken, pending })), JSON.stringify(broken)).toEqual({ pending });
    }
    for (const text of ['', 'not json', 'null', '7', '"text"', '[]']) expect(parseKeyNames(text), text).toEqual({});
  });
});

describe('the seeded generator', () => {
  it('is mulberry32: the published first outputs for seed 1', () => {
    const random = seededRandom(1);
    expect([random(), random(), random()]).toEqual([0.6270739405881613, 0.002735721180215478, 0.5274470399599522]);
    expect(seededRandom(0xdeadbeef)()).toBe(0.9413696140982211);
  });

  it('shuffles a copy, the same way for the same seed, keeping every item', () => {
    const items = [1, 2, 3, 4, 5];
    expect(shuffled(items, seededRandom(42))).toEqual([1, 5, 3, 2, 4]);
    expect(items).toEqual([1, 2, 3, 4, 5]);
    expect(shuffled([], seededRandom(1))).toEqual([]);
    // Fisher-Yates draws j from 0..i: a generator at its top swaps nothing (j = i), one at zero swaps each item with the first.
    expect(shuffled(['a', 'b', 'c'], () => 0.999)).toEqual(['a', 'b', 'c']);
    expect(shuffled(['a', 'b', 'c'], () => 0)).toEqual(['b', 'c', 'a']);
    // One draw per swap, n - 1 for n items: the sequence that follows is the same whatever is shuffled before it.
    let draws = 0;
    shuffled([1, 2, 3, 4], () => (draws += 1, 0.5));
    expect(draws).toBe(3);
  });
});

describe('an applier summary, read by the rotation', () => {
  const summary = (fields: Partial<ApplierSummary>): ApplierSummary => ({ action: 'applied', flavor: 'nginx', exitCode: 0, keys: ['k1', 'k2'], ...fields });

  it('reloaded only when a set was applied by a reload', () => {
    expect(reloaded(summary({ via: 'reload' }))).toBe(true);
    expect(reloaded(summary({ via: 'runtime-api' }))).toBe(false);
    expect(reloaded(summary({ via: 'start' }))).toBe(false);
    expect(reloaded(summary({ action: 'unchanged', via: 'reload' }))).toBe(false);
  });

  it('a result: ok on exit 0, else the applier\'s error or its exit code; generation and storage only when given', () => {
    expect(resultFromSummary('n1', summary({ generation: 3, keysInMemory: true }))).toStrictEqual({ node: 'n1', ok: true, keys: ['k1', 'k2'], action: 'applied', generation: 3, keysInMemory: true });
    expect(resultFromSummary('n1', summary({ action: 'refused', exitCode: 4, error: 'older' }))).toStrictEqual({ node: 'n1', ok: false, keys: ['k1', 'k2'], action: 'refused', error: 'older' });
    expect(resultFromSummary('n1', summary({ action: 'failed', exitCode: 8 }))).toStrictEqual({ node: 'n1', ok: false, keys: ['k1', 'k2'], action: 'failed', error: 'the applier exited with code 8' });
    // A summary line that names no keys (parsed from a node's output, not typed) reads as none.
    const keyless = JSON.parse('{"action":"failed","flavor":"nginx","exitCode":8}') as ApplierSummary;
    expect(resultFromSummary('n1', keyless).keys).toStrictEqual([]);
  });

  it('a status: the generation it serves, or the damage --status named', () => {
    expect(statusFromSummary('n1', summary({ action: 'active', generation: 2 }))).toStrictEqual({ node: 'n1', keys: ['k1', 'k2'], generation: 2 });
    expect(statusFromSummary('n1', summary({ action: 'none', keys: [] }))).toStrictEqual({ node: 'n1', keys: [] });
    expect(statusFromSummary('n1', summary({ action: 'damaged', generation: 2, error: 'the key directory holds a.conf, which the applier did not write' }))).toStrictEqual({
      node: 'n1',
      keys: ['k1', 'k2'],
      error: 'the key directory holds a.conf, which the applier did not write',
    });
    expect(statusFromSummary('n1', summary({ action: 'damaged' })).error).toBe('its key files or include no longer match its recorded generation');
    for (const action of ['none', 'damaged'] as const) {
      expect(statusFromSummary('n1', JSON.parse(`{"action":"${action}","flavor":"nginx","exitCode":0}`) as ApplierSummary).keys).toStrictEqual([]);
    }
  });
});

describe('one word for bash', () => {
  it('single-quotes it, writing each quote as \'\\\'\'; bash reads back exactly the word', () => {
    expect(shellQuote("it's")).toBe("'it'\\''s'");
    for (const word of ["it's", '', '$(echo injected) `id` "a b"', "''", 'line\nbreak']) {
      const echoed = spawnSync('bash', ['-c', `printf %s ${shellQuote(word)}`], { encoding: 'utf8' });
      expect(echoed.stdout).toBe(word);
    }
  });
});
