// A deployed stack updates in place only while each resource keeps its logical ID: a new ID
// makes CloudFormation replace the resource (a new key set secret, KMS key, log group or alarm
// topic). The IDs of every configuration below are pinned in test/fixtures/logical-ids.json;
// a change to them must be made on purpose, with a way for deployed stacks to follow.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../src/project-root.js';
import { CONFIGURATIONS, logicalIds } from './logical-ids.js';

describe('logical IDs', () => {
  const pinned = JSON.parse(readFileSync(join(PROJECT_ROOT, 'test', 'fixtures', 'logical-ids.json'), 'utf8')) as Record<string, Record<string, string>>;

  it('pins every configuration', () => {
    expect(Object.keys(pinned).sort()).toEqual(Object.keys(CONFIGURATIONS).sort());
  });

  for (const [name, props] of Object.entries(CONFIGURATIONS)) {
    it(`stay as pinned: ${name}`, () => {
      expect(logicalIds(props)).toEqual(pinned[name]);
    });
  }
});
