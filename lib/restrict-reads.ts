import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import type * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { AWSCURRENT } from '../src/core/secret-store.js';

/**
 * Nobody but `readers` reads `secret`, whatever their own policies allow (an account
 * administrator's `*` included): a Deny in the secret's policy, and the same Deny on kms:Decrypt
 * in its key's policy. Secrets Manager's own check of the key when a secret is created
 * ("SecretVersionId": "RequestToValidateKeyAccess", which decrypts no secret) stays open, so
 * that CloudFormation can create it:
 * https://docs.aws.amazon.com/secretsmanager/latest/userguide/security-encryption.html
 * `taggedReaders` adds the roles carrying that tag. `onlyCurrent` denies, to everyone, a read of
 * anything but AWSCURRENT named in the request: a replaced value is never read again.
 */
export function restrictReads(secret: secretsmanager.Secret, key: kms.Key, readers: string[], options: { taggedReaders?: { key: string; value: string }; onlyCurrent?: boolean }): void {
  const notAReader: Record<string, Record<string, string | string[]>> = {
    ArnNotEquals: { 'aws:PrincipalArn': readers },
    ...(options.taggedReaders ? { StringNotEquals: { [`aws:PrincipalTag/${options.taggedReaders.key}`]: options.taggedReaders.value } } : {}),
  };
  secret.addToResourcePolicy(
    new iam.PolicyStatement({ sid: 'OnlyItsReadersRead', effect: iam.Effect.DENY, principals: [new iam.AnyPrincipal()], actions: ['secretsmanager:GetSecretValue'], resources: ['*'], conditions: notAReader }),
  );
  if (options.onlyCurrent) {
    secret.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'OnlyTheCurrentValue',
        effect: iam.Effect.DENY,
        principals: [new iam.AnyPrincipal()],
        actions: ['secretsmanager:GetSecretValue'],
        resources: ['*'],
        conditions: { StringNotEquals: { 'secretsmanager:VersionStage': AWSCURRENT } },
      }),
    );
  }
  key.addToResourcePolicy(
    new iam.PolicyStatement({
      sid: 'OnlyItsReadersDecrypt',
      effect: iam.Effect.DENY,
      principals: [new iam.AnyPrincipal()],
      actions: ['kms:Decrypt'],
      resources: ['*'],
      conditions: { ...notAReader, StringNotEquals: { ...notAReader.StringNotEquals, 'kms:EncryptionContext:SecretVersionId': 'RequestToValidateKeyAccess' } },
    }),
  );
}
