import { DescribeSecretCommand, PutSecretValueCommand, UpdateSecretVersionStageCommand, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { AWSCURRENT, AWSPREVIOUS } from '../core/secret-store.js';
import { SecretsManagerReader } from './secrets-manager-reader.js';

/**
 * The verifier's own secret for the sessions it captures during a rotation: they hold live
 * session secrets (the TLS 1.2 master secret, the TLS 1.3 resumption secret). Each value
 * replaces the one before, which keeps no stage; the secret's policy lets nobody read a version
 * but AWSCURRENT, so a replaced value stays unreadable until Secrets Manager deletes it (it
 * deletes versions with no stage once a secret has more than 100; no call deletes one version:
 * https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_DeleteSecret.html).
 */
export class TicketStore {
  /** The read half of SecretsManagerStore: the whole store's calls (ListSecretVersionIds, UntagResource) are not the verifier's. */
  private readonly reader: SecretsManagerReader;

  constructor(
    private readonly client: SecretsManagerClient,
    private readonly secretId: string,
  ) {
    this.reader = new SecretsManagerReader(client, secretId);
  }

  async read(): Promise<string> {
    return (await this.reader.getVersion({ stage: AWSCURRENT }))?.value ?? '';
  }

  async replace(value: string): Promise<void> {
    // The new version takes AWSCURRENT, and the one before AWSPREVIOUS:
    // https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_PutSecretValue.html
    await this.client.send(new PutSecretValueCommand({ SecretId: this.secretId, SecretString: value }));
    const stages = (await this.client.send(new DescribeSecretCommand({ SecretId: this.secretId }))).VersionIdsToStages ?? {};
    for (const [versionId, labels] of Object.entries(stages)) {
      if (labels.includes(AWSPREVIOUS)) {
        await this.client.send(new UpdateSecretVersionStageCommand({ SecretId: this.secretId, VersionStage: AWSPREVIOUS, RemoveFromVersionId: versionId }));
      }
    }
  }

  /** Forgets every captured session. */
  async clear(): Promise<void> {
    await this.replace('{}');
  }
}
