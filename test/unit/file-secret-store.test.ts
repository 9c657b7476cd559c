import { makeMemoryDirectory } from '../../src/local/fleet.js';
import { rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AWSCURRENT, AWSPENDING, AWSPREVIOUS } from '../../src/core/secret-store.js';
import { FileSecretStore } from '../../src/local/file-secret-store.js';

const id = (n: number): string => `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;

describe('file-backed secret store with Secrets Manager stages', () => {
  let dir: string;
  let store: FileSecretStore;
  beforeEach(() => {
    dir = makeMemoryDirectory('store-test-');
    store = new FileSecretStore(dir);
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('moves stages the way Secrets Manager does', async () => {
    await store.putVersion(id(1), 'one', [AWSCURRENT]);
    await store.putVersion(id(2), 'two', [AWSPENDING]);
    expect(await store.versionStages()).toEqual({ [id(1)]: [AWSCURRENT], [id(2)]: [AWSPENDING] });
    await store.moveStage(AWSCURRENT, id(2));
    await store.removeStage(AWSPENDING, id(2));
    expect(await store.versionStages()).toEqual({ [id(1)]: [AWSPREVIOUS], [id(2)]: [AWSCURRENT] });
    expect((await store.getVersion({ stage: AWSCURRENT }))?.value).toBe('two');
    expect((await store.getVersion({ stage: AWSPREVIOUS }))?.value).toBe('one');
    expect(await store.getVersion({ stage: AWSPENDING })).toBeUndefined();
    await store.putVersion(id(3), 'three', [AWSPENDING]);
    await store.putVersion(id(4), 'four', [AWSPENDING]);
    expect((await store.getVersion({ stage: AWSPENDING }))?.versionId).toBe(id(4));
    expect(statSync(join(dir, 'versions', `${id(4)}.json`)).mode & 0o777).toBe(0o600);
  });

  it('repeats a put idempotently but refuses another value under the same id', async () => {
    await store.putVersion(id(1), 'one', [AWSPENDING]);
    await store.putVersion(id(1), 'one', [AWSPENDING]);
    await expect(store.putVersion(id(1), 'other', [AWSPENDING])).rejects.toThrow(/already exists with another value/);
    await expect(store.putVersion('../escape', 'x', [])).rejects.toThrow(/version id "..\/escape" is not valid/);
    await expect(store.moveStage(AWSCURRENT, id(9))).rejects.toThrow(/does not exist/);
  });
});
