// The local mode's `aws secretsmanager get-secret-value --version-stage AWSCURRENT --query
// SecretString --output text`: what a local node's boot-time fetch runs against the file
// store. It answers with the AWS CLI's return codes, which the fetch reads: 254 when the store
// answered with an error (no current version yet), 255 when the store cannot be reached.
// https://docs.aws.amazon.com/cli/latest/userguide/cli-usage-returncodes.html
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { AWSCURRENT } from '../core/secret-store.js';
import { FileSecretStore } from './file-secret-store.js';

const [storeDir] = process.argv.slice(2);
if (storeDir === undefined || !existsSync(join(storeDir, 'versions'))) {
  console.error(`cannot reach the key store at ${storeDir ?? '(no directory given)'}`);
  process.exit(255);
}
const current = await new FileSecretStore(storeDir).getVersion({ stage: AWSCURRENT });
if (current === undefined) {
  console.error(`the key store at ${storeDir} has no ${AWSCURRENT} version yet: run a rotation first`);
  process.exit(254);
}
process.stdout.write(`${current.value}\n`);
