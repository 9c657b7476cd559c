// The two readers of a key set, the engine (TypeScript) and the node applier (Python), refuse
// the same documents with the same message, case by case: no document can mean one thing to
// the rotation and another to a node. The applier's validation runs before it touches anything,
// so no server is needed here.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KeySetError, parseKeySet, serializeKeySet } from '../../src/core/keyset.js';
import { runApplier } from '../../src/local/applier.js';
import { makeMemoryDirectory } from '../../src/local/fleet.js';
import { lineage } from '../support/helpers.js';
import { malformedKeySets } from '../support/malformed-key-sets.js';

describe('the engine and the node applier on malformed key sets', () => {
  let keyDir: string;
  const [, gen2] = lineage(2);
  const cases = malformedKeySets(gen2!);
  const applierArgs = (): string[] => ['--key-dir', keyDir, '--include', join(keyDir, 'ticket-keys.conf'), '--test-cmd', 'false', '--config-dump-cmd', 'false', '--reload-cmd', 'false'];

  beforeAll(() => {
    keyDir = makeMemoryDirectory('validators-');
  });
  afterAll(() => rmSync(keyDir, { recursive: true, force: true }));

  it.each(cases)('%s: both refuse it, with the same message', async (_, make, message) => {
    const input = make();
    let engineMessage = '';
    try {
      parseKeySet(input);
    } catch (error) {
      expect(error).toBeInstanceOf(KeySetError);
      engineMessage = (error as Error).message;
    }
    expect(engineMessage).toMatch(message);
    const run = await runApplier(applierArgs(), input);
    expect(run.exitCode).toBe(3);
    expect(run.summary.error).toBe(engineMessage);
  });

  const valid: [string, () => string][] = [
    ['the valid set the cases are made from', () => serializeKeySet(gen2!)],
    ['creation times with no fraction of a second, one digit, or nine', () => {
      const doc = JSON.parse(serializeKeySet(gen2!)) as { keys: { createdAt: string }[] };
      ['2026-02-28T10:00:00Z', '2026-02-28T10:00:00.5Z', '2026-02-28T10:00:00.123456789Z'].forEach((createdAt, index) => (doc.keys[index]!.createdAt = createdAt));
      return JSON.stringify(doc);
    }],
  ];

  it.each(valid)('both accept %s', async (_, make) => {
    expect(parseKeySet(make()).generation).toBe(2);
    const run = await runApplier([...applierArgs(), '--before-start'], make());
    // Valid, then written: the config test (false) fails and the applier restores.
    expect(run.summary.error).toMatch(/config test 'false' failed/);
  });
});
