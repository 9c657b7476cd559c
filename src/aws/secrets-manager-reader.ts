import { GetSecretValueCommand, ResourceNotFoundException, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { SecretReader, SecretVersion, VersionReference } from '../core/secret-store.js';

/** Reads versions of a secret in Secrets Manager: SecretsManagerStore's read half, and the one way the verifier's ticket store reads. */
export class SecretsManagerReader implements SecretReader {
  constructor(
    protected readonly client: SecretsManagerClient,
    protected readonly secretId: string,
  ) {}

  async getVersion(reference: VersionReference): Promise<SecretVersion | undefined> {
    try {
      const response = await this.client.send(
        new GetSecretValueCommand({
          SecretId: this.secretId,
          ...('versionId' in reference ? { VersionId: reference.versionId } : { VersionStage: reference.stage }),
        }),
      );
      if (response.VersionId === undefined || response.SecretString === undefined) return undefined;
      return { versionId: response.VersionId, value: response.SecretString, stages: response.VersionStages ?? [] };
    } catch (error) {
      // A version that rotation has labelled but not yet given a value is "not found" too.
      if (error instanceof ResourceNotFoundException) return undefined;
      throw error;
    }
  }
}
