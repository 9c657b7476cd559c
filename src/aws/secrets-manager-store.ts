import {
  DescribeSecretCommand,
  paginateListSecretVersionIds,
  PutSecretValueCommand,
  UntagResourceCommand,
  UpdateSecretVersionStageCommand,
} from '@aws-sdk/client-secrets-manager';
import { AWSCURRENT, REVOCATION_TAG, type SecretStore } from '../core/secret-store.js';
import { SecretsManagerReader } from './secrets-manager-reader.js';

/** The key set secret in Secrets Manager, behind the same interface as the local store. */
export class SecretsManagerStore extends SecretsManagerReader implements SecretStore {
  async versionStages(): Promise<Record<string, string[]>> {
    const response = await this.client.send(new DescribeSecretCommand({ SecretId: this.secretId }));
    return Object.fromEntries(Object.entries(response.VersionIdsToStages ?? {}).filter(([, stages]) => stages.length > 0));
  }

  async unlabelledVersionIds(): Promise<string[]> {
    const versions: { id: string; created: number }[] = [];
    for await (const page of paginateListSecretVersionIds({ client: this.client }, { SecretId: this.secretId, IncludeDeprecated: true })) {
      for (const version of page.Versions ?? []) {
        if (version.VersionId !== undefined && (version.VersionStages ?? []).length === 0) {
          versions.push({ id: version.VersionId, created: version.CreatedDate?.getTime() ?? 0 });
        }
      }
    }
    return versions.sort((a, b) => b.created - a.created).map((version) => version.id);
  }

  async putVersion(versionId: string, value: string, stages: string[]): Promise<void> {
    await this.client.send(
      new PutSecretValueCommand({ SecretId: this.secretId, ClientRequestToken: versionId, SecretString: value, VersionStages: stages }),
    );
  }

  async moveStage(stage: string, versionId: string): Promise<void> {
    const holder = Object.entries(await this.versionStages()).find(([, stages]) => stages.includes(stage))?.[0];
    if (holder === versionId) return;
    await this.client.send(
      new UpdateSecretVersionStageCommand({
        SecretId: this.secretId,
        VersionStage: stage,
        MoveToVersionId: versionId,
        ...(holder !== undefined ? { RemoveFromVersionId: holder } : {}),
      }),
    );
  }

  async removeStage(stage: string, versionId: string): Promise<void> {
    if (stage === AWSCURRENT) throw new Error('AWSCURRENT can only be moved, never removed');
    await this.client.send(new UpdateSecretVersionStageCommand({ SecretId: this.secretId, VersionStage: stage, RemoveFromVersionId: versionId }));
  }

  async revocationRequest(): Promise<string | undefined> {
    const response = await this.client.send(new DescribeSecretCommand({ SecretId: this.secretId }));
    const tag = response.Tags?.find((candidate) => candidate.Key === REVOCATION_TAG);
    return tag === undefined ? undefined : (tag.Value ?? '');
  }

  async clearRevocationRequest(): Promise<void> {
    await this.client.send(new UntagResourceCommand({ SecretId: this.secretId, TagKeys: [REVOCATION_TAG] }));
  }
}
