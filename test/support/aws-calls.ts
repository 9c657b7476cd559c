import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { gunzipSync } from 'node:zlib';

/** The IAM service prefix of each SDK client package the code uses. */
const SERVICE_OF_PACKAGE: Record<string, string> = {
  '@aws-sdk/client-secrets-manager': 'secretsmanager',
  '@aws-sdk/client-ssm': 'ssm',
  '@aws-sdk/client-lambda': 'lambda',
  '@aws-sdk/client-ec2': 'ec2',
  '@aws-sdk/client-cloudformation': 'cloudformation',
  '@aws-sdk/client-cloudwatch-logs': 'logs',
};

/** SDK commands whose IAM action has another name. */
const ACTION_OF_COMMAND: Record<string, string> = { 'lambda:Invoke': 'lambda:InvokeFunction' };

function localImports(file: string, source: string): string[] {
  // Type-only imports run no code.
  return [...source.matchAll(/(?:^|\n)(?:import|export)\s+(?!type\s)[^;]*?from\s+'(\.{1,2}\/[^']+)'/g)].map((match) => resolve(dirname(file), match[1]!.replace(/\.js$/, '.ts')));
}

/**
 * The AWS API calls the code behind a Lambda entry point can make, as IAM actions: every SDK
 * command and paginator its modules import (types aside), following its local imports. A new
 * call in the code shows up here, so a test that checks each call's permission sees it.
 */
export function sdkCallsOf(entry: string): string[] {
  const calls = new Set<string>();
  const seen = new Set<string>();
  const pending = [resolve(entry)];
  while (pending.length > 0) {
    const file = pending.pop()!;
    if (seen.has(file) || !existsSync(file)) continue;
    seen.add(file);
    const source = readFileSync(file, 'utf8');
    for (const match of source.matchAll(/import\s*\{([^}]*)\}\s*from\s*'(@aws-sdk\/client-[a-z0-9-]+)'/g)) {
      const service = SERVICE_OF_PACKAGE[match[2]!];
      if (service === undefined) throw new Error(`${file} imports ${match[2]}: add its IAM service prefix to SERVICE_OF_PACKAGE`);
      for (const raw of match[1]!.split(',')) {
        const name = raw.trim();
        if (name === '' || name.startsWith('type ')) continue;
        const operation = /^(\w+)Command$/.exec(name)?.[1] ?? /^paginate(\w+)$/.exec(name)?.[1];
        if (operation === undefined) continue;
        const action = `${service}:${operation}`;
        calls.add(ACTION_OF_COMMAND[action] ?? action);
      }
    }
    pending.push(...localImports(file, source));
  }
  return [...calls].sort();
}

/**
 * The files of applier/ an SSM document carries (gzip, base64), unpacked, by their path there;
 * each is checked against the SHA-256 the document shows in the clear.
 */
export function embeddedFiles(command: string): Record<string, string> {
  const files: Record<string, string> = {};
  for (const [, name, digest, packed] of command.matchAll(/^# applier\/(\S+): sha256 ([0-9a-f]{64}) \(gzip, base64\)\n(?:mkdir -p "\$work\/[\w/]+"\n)?base64 -d <<'(?:\w+)' \| gunzip >"\$work\/\1"\n([A-Za-z0-9+/=\n]+?)\n\w+\n/gm)) {
    const content = gunzipSync(Buffer.from(packed as string, 'base64'));
    const actual = createHash('sha256').update(content).digest('hex');
    if (actual !== digest) throw new Error(`applier/${name} in the document has SHA-256 ${actual}, not the ${digest} it shows`);
    files[name as string] = content.toString('utf8');
  }
  return files;
}

/**
 * The `aws SERVICE OPERATION` calls of a node script (the AWS CLI), as IAM actions: its words
 * bare or quoted, at any depth (a command passed as an argument, such as the boot-time fetch),
 * or as a list of words (Python's ["aws", "ssm", ...]).
 */
export function cliCallsOf(script: string): string[] {
  const calls = new Set<string>();
  for (const match of script.replace(/['"\\]/g, '').matchAll(/(?:^|[\s;|&([,])aws[\s,]+([a-z0-9-]+)[\s,]+([a-z0-9-]+)/g)) {
    const operation = match[2]!.split('-').map((word) => word[0]!.toUpperCase() + word.slice(1)).join('');
    calls.add(`${match[1]}:${operation}`);
  }
  return [...calls].sort();
}

export const PROJECT = join(import.meta.dirname, '..', '..');
