import { mkdirSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { AWSCURRENT, AWSPREVIOUS, REVOCATION_TAG, type SecretStore, type SecretVersion, type VersionReference } from '../core/secret-store.js';
import { writePrivateFile } from './private-file.js';

interface StoreIndex {
  stages: Record<string, string[]>;
  /** The secret's tags, as Secrets Manager keeps them beside the versions. */
  tags?: Record<string, string>;
}

const VERSION_ID = /^[A-Za-z0-9-]{32,64}$/;

/**
 * A secret kept in a directory: one 0600 file per version and an index of stages, every write
 * atomic (temp file and rename). One writer at a time, like one rotation at a time.
 */
export class FileSecretStore implements SecretStore {
  constructor(private readonly dir: string) {
    mkdirSync(join(dir, 'versions'), { recursive: true, mode: 0o700 });
  }

  private readIndex(): StoreIndex {
    const path = join(this.dir, 'index.json');
    return existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as StoreIndex) : { stages: {} };
  }

  private writeIndex(index: StoreIndex): void {
    writePrivateFile(join(this.dir, 'index.json'), JSON.stringify(index));
  }

  private versionPath(versionId: string): string {
    if (!VERSION_ID.test(versionId)) {
      throw new Error(`version id "${versionId}" is not valid: use 32 to 64 letters, digits or dashes (a UUID)`);
    }
    return join(this.dir, 'versions', `${versionId}.json`);
  }

  async getVersion(reference: VersionReference): Promise<SecretVersion | undefined> {
    const index = this.readIndex();
    const versionId =
      'versionId' in reference
        ? reference.versionId
        : Object.keys(index.stages).find((id) => index.stages[id]?.includes(reference.stage));
    if (versionId === undefined) return undefined;
    const path = this.versionPath(versionId);
    if (!existsSync(path)) return undefined;
    return { versionId, value: readFileSync(path, 'utf8'), stages: index.stages[versionId] ?? [] };
  }

  async versionStages(): Promise<Record<string, string[]>> {
    const { stages } = this.readIndex();
    return Object.fromEntries(Object.entries(stages).filter(([, list]) => list.length > 0));
  }

  async unlabelledVersionIds(): Promise<string[]> {
    // The index keeps versions in the order they were first stored.
    return Object.entries(this.readIndex().stages)
      .filter(([, list]) => list.length === 0)
      .map(([id]) => id)
      .reverse();
  }

  async putVersion(versionId: string, value: string, stages: string[]): Promise<void> {
    const path = this.versionPath(versionId);
    if (existsSync(path)) {
      if (readFileSync(path, 'utf8') !== value) {
        throw new Error(`version ${versionId} already exists with another value: use a new version id`);
      }
    } else {
      writePrivateFile(path, value);
    }
    const index = this.readIndex();
    for (const stage of stages) this.assignStage(index, stage, versionId);
    this.writeIndex(index);
  }

  private assignStage(index: StoreIndex, stage: string, versionId: string): void {
    for (const id of Object.keys(index.stages)) {
      index.stages[id] = (index.stages[id] ?? []).filter((name) => name !== stage);
    }
    index.stages[versionId] = [...(index.stages[versionId] ?? []), stage];
  }

  async moveStage(stage: string, versionId: string): Promise<void> {
    if (!existsSync(this.versionPath(versionId))) throw new Error(`version ${versionId} does not exist`);
    const index = this.readIndex();
    if (stage === AWSCURRENT) {
      const holder = Object.keys(index.stages).find((id) => index.stages[id]?.includes(AWSCURRENT));
      if (holder === versionId) return;
      if (holder !== undefined) this.assignStage(index, AWSPREVIOUS, holder);
    }
    this.assignStage(index, stage, versionId);
    this.writeIndex(index);
  }

  async removeStage(stage: string, versionId: string): Promise<void> {
    const index = this.readIndex();
    index.stages[versionId] = (index.stages[versionId] ?? []).filter((name) => name !== stage);
    this.writeIndex(index);
  }

  /** The local equivalent of tagging the secret RevokeTicketKeys=<who and why>: the next rotation revokes. */
  requestRevocation(reason: string): void {
    const index = this.readIndex();
    index.tags = { ...index.tags, [REVOCATION_TAG]: reason };
    this.writeIndex(index);
  }

  async revocationRequest(): Promise<string | undefined> {
    return this.readIndex().tags?.[REVOCATION_TAG];
  }

  async clearRevocationRequest(): Promise<void> {
    const index = this.readIndex();
    if (index.tags?.[REVOCATION_TAG] === undefined) return;
    index.tags = Object.fromEntries(Object.entries(index.tags).filter(([key]) => key !== REVOCATION_TAG));
    this.writeIndex(index);
  }
}
