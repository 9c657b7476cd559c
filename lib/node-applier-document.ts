import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { FLAVORS, type ServerFlavor } from '../src/flavors/index.js';
import { shellQuote } from '../src/core/shell.js';
import { APPLIER_DIR, applierFiles, onboardingFiles } from '../src/project-paths.js';
import { SettingError } from './setting-error.js';

/** How the applier is run on each node: baked into the document at synth time. */
export interface NodeApplierSettings {
  flavor: ServerFlavor;
  keyDirectory: string;
  includePath: string;
  testCommand: string;
  configDumpCommand: string;
  reloadCommand: string;
  allowPersistentKeyDirectory: boolean;
  /** haproxy: its runtime API socket, to rotate without a reload. */
  runtimeSocket?: string;
}

export const SECRET_ARN_PATTERN = '^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[A-Za-z0-9/_+=.@-]+$';
/** Version ids: UUIDs from RotateSecret, or the Scheduler's tokens, which hold a time (colons). */
export const VERSION_ID_PATTERN = '^([A-Za-z0-9:-]{32,64})?$';
const HEREDOC_END = 'APPLY_TICKET_KEYS_SCRIPT';
/** The document's own exit code when the node cannot fetch the key set: above the applier's codes. */
export const FETCH_FAILED_EXIT = 10;

function checkSetting(name: string, value: string): void {
  if (value.trim() === '' || /[\n\r]/.test(value)) throw new SettingError(`${name} must be one non-empty line (got ${JSON.stringify(value)})`);
  // SSM would read "{{" as a parameter reference and change the command.
  if (value.includes('{{')) throw new SettingError(`${name} must not contain "{{" (got ${JSON.stringify(value)})`);
}

/** gzip's header byte for "operating system unknown": the same bytes whichever system synthesizes. */
const GZIP_OS_UNKNOWN = 255;
const BASE64_LINE = 1024;

/**
 * A file of applier/ as the document carries it: gzip and base64 (both documents must fit in
 * SSM's 64 KB, and the onboarding one carries the applier too), with the SHA-256 of the file in
 * the clear, so that a reviewer compares the document with `sha256sum applier/<file>` of a
 * release, and the node checks what it unpacked before running it.
 */
function embeddedFile(file: string): string {
  const content = readFileSync(join(APPLIER_DIR, file));
  const packed = gzipSync(content, { level: 9 });
  packed[9] = GZIP_OS_UNKNOWN;
  const lines = packed.toString('base64').match(new RegExp(`.{1,${BASE64_LINE}}`, 'g')) ?? [];
  const digest = createHash('sha256').update(content).digest('hex');
  return [
    `# applier/${file}: sha256 ${digest} (gzip, base64)`,
    ...(dirname(file) === '.' ? [] : [`mkdir -p "$work/${dirname(file)}"`]),
    `base64 -d <<'${HEREDOC_END}' | gunzip >"$work/${file}"`,
    ...lines,
    HEREDOC_END,
    `printf '%s  %s\\n' ${digest} "$work/${file}" | sha256sum -c --quiet -`,
  ].join('\n');
}

/**
 * The start both documents share: bash (the agent may start the file with sh), strict mode,
 * the SSM parameters as shell variables, and the files of applier/ written to a temporary directory.
 */
function documentScript(purpose: string, variables: Record<string, string>, files: string[]): string {
  return `#!/bin/bash
# ${purpose} Generated from applier/: ${files.join(' ')}.
# The agent may start this file with sh: carry on in bash.
if [ -z "\${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail
${Object.entries(variables).map(([name, parameter]) => `${name}='{{ ${parameter} }}'`).join('\n')}
work=$(mktemp -d)
trap 'rm -rf -- "$work"' EXIT
${files.map(embeddedFile).join('\n')}`;
}

/**
 * The shell script the SSM document runs on a node, built from the applier script itself:
 * it fetches the key set by version id with the node's own role (key material never passes
 * through SSM parameters or output), pipes it to the applier, and prints only its summary.
 */
export function nodeApplierCommand(settings: NodeApplierSettings): string {
  for (const path of [settings.keyDirectory, settings.includePath]) {
    if (!path.startsWith('/')) throw new SettingError(`key directory and include path must be absolute (got ${JSON.stringify(path)})`);
  }
  checkSetting('keyDirectory', settings.keyDirectory);
  checkSetting('includePath', settings.includePath);
  checkSetting('testCommand', settings.testCommand);
  checkSetting('configDumpCommand', settings.configDumpCommand);
  checkSetting('reloadCommand', settings.reloadCommand);
  if (settings.runtimeSocket !== undefined) {
    if (!FLAVORS[settings.flavor].hasRuntimeApi) {
      const withApi = Object.values(FLAVORS).filter((flavor) => flavor.hasRuntimeApi).map((flavor) => flavor.name);
      throw new SettingError(`runtimeSocket is for the ${withApi.join(' or ')} flavor only`);
    }
    checkSetting('runtimeSocket', settings.runtimeSocket);
  }
  const applierArgs = [
    '--flavor', settings.flavor,
    '--key-dir', settings.keyDirectory,
    '--include', settings.includePath,
    '--test-cmd', settings.testCommand,
    '--config-dump-cmd', settings.configDumpCommand,
    '--reload-cmd', settings.reloadCommand,
    ...(settings.allowPersistentKeyDirectory ? ['--allow-persistent-key-dir'] : []),
    ...(settings.runtimeSocket !== undefined ? ['--runtime-socket', settings.runtimeSocket] : []),
  ].map(shellQuote).join(' ');
  const fetchFailed = JSON.stringify({
    action: 'failed',
    flavor: settings.flavor,
    exitCode: FETCH_FAILED_EXIT,
    keys: [],
    error: 'could not fetch the key set from Secrets Manager: attach the stack\'s node policy to the instance role, tag that role (or list it in nodeRoleArns) and install the AWS CLI',
  });
  return `${documentScript('Applies a TLS ticket key set version on this node.', { secret_id: 'SecretId', version_id: 'VersionId', action: 'Action' }, applierFiles())}
applier=(bash "$work/apply-ticket-keys.sh" ${applierArgs})
if [ "$action" = status ]; then
  "\${applier[@]}" --status
  exit
fi
region=$(printf '%s' "$secret_id" | cut -d: -f4)
fetch() { aws secretsmanager get-secret-value --region "$region" --secret-id "$secret_id" "$@" --query SecretString --output text; }
# The node's role reads AWSPENDING and AWSCURRENT only, named in the request
# (secretsmanager:VersionStage): a rotation's version is pending while it runs, current after.
if [ -n "$version_id" ]; then
  keyset=$(fetch --version-id "$version_id" --version-stage AWSPENDING 2>/dev/null) || keyset=$(fetch --version-id "$version_id" --version-stage AWSCURRENT) || fetched=no
else
  keyset=$(fetch --version-stage AWSCURRENT) || fetched=no
fi
if [ "\${fetched:-yes}" = no ]; then
  echo ${shellQuote(fetchFailed)}
  exit ${FETCH_FAILED_EXIT}
fi
printf '%s\\n' "$keyset" | "\${applier[@]}"
`;
}

/** The SSM Command document (schema 2.2) around that script. */
export function nodeApplierDocument(settings: NodeApplierSettings): Record<string, unknown> {
  return {
    schemaVersion: '2.2',
    description: 'Applies a TLS session ticket key set version from Secrets Manager to this node, or reports the active one.',
    parameters: {
      SecretId: { type: 'String', description: 'ARN of the key set secret.', allowedPattern: SECRET_ARN_PATTERN },
      VersionId: {
        type: 'String',
        description: 'Secret version to apply; empty applies AWSCURRENT.',
        default: '',
        allowedPattern: VERSION_ID_PATTERN,
      },
      Action: { type: 'String', description: 'apply, or status to report the active generation.', default: 'apply', allowedValues: ['apply', 'status'] },
    },
    mainSteps: [
      {
        action: 'aws:runShellScript',
        name: 'applyTicketKeys',
        precondition: { StringEquals: ['platformType', 'Linux'] },
        inputs: { timeoutSeconds: '300', runCommand: nodeApplierCommand(settings).split('\n') },
      },
    ],
  };
}

export const CONFIG_PATH_PATTERN = '^/[A-Za-z0-9._/-]+$';

/** The key set secret that a node's boot-time fetch reads with the node's own role. */
export interface KeySetSecret {
  arn: string;
  region: string;
}

/** How long a node's start waits for Secrets Manager before it starts on what it has. */
export const BOOT_FETCH_WAIT_SECONDS = 30;

/**
 * The boot-time fetch on AWS: AWSCURRENT with the node's role. Short connect and read timeouts,
 * so that the prestart's retries, not one hung connection, fill its bounded wait.
 */
function bootFetchCommand(secret: KeySetSecret): string {
  return ['aws', 'secretsmanager', 'get-secret-value', '--region', secret.region, '--secret-id', secret.arn, '--version-stage', 'AWSCURRENT', '--query', 'SecretString', '--output', 'text', '--cli-connect-timeout', '5', '--cli-read-timeout', '10']
    .map(shellQuote)
    .join(' ');
}

/**
 * The shell script of the onboarding document, run once per node: applier/onboard-node.sh
 * with the stack's settings and the config file the operator names. It installs the applier
 * and the boot-time fetch of this stack's secret.
 */
export function nodeOnboardingCommand(settings: NodeApplierSettings, secret: KeySetSecret): string {
  const args = [
    '--flavor', settings.flavor,
    '--key-dir', settings.keyDirectory,
    '--include', settings.includePath,
    '--test-cmd', settings.testCommand,
    '--config-dump-cmd', settings.configDumpCommand,
    '--fetch-cmd', bootFetchCommand(secret),
    '--fetch-wait', String(BOOT_FETCH_WAIT_SECONDS),
    ...(settings.allowPersistentKeyDirectory ? ['--allow-persistent-key-dir'] : []),
  ].map(shellQuote).join(' ');
  return `${documentScript('Prepares this node once for managed TLS ticket keys, and fetches them at every start.', { config: 'ConfigFile' }, onboardingFiles())}
bash "$work/onboard-node.sh" ${args} --config "$config"
`;
}

/** The SSM Command document (schema 2.2) that onboards a node. */
export function nodeOnboardingDocument(settings: NodeApplierSettings, secret: KeySetSecret): Record<string, unknown> {
  return {
    schemaVersion: '2.2',
    description: 'Prepares this node once for managed TLS session ticket keys: key directory in memory, the server config loading them (checked by its config test), and a fetch of the current keys before every start of the server.',
    parameters: {
      ConfigFile: {
        type: 'String',
        description: 'nginx: the file with the TLS server blocks; haproxy: its config.',
        default: FLAVORS[settings.flavor].defaultConfig,
        allowedPattern: CONFIG_PATH_PATTERN,
      },
    },
    mainSteps: [
      {
        action: 'aws:runShellScript',
        name: 'onboardNode',
        precondition: { StringEquals: ['platformType', 'Linux'] },
        inputs: { timeoutSeconds: '120', runCommand: nodeOnboardingCommand(settings, secret).split('\n') },
      },
    ],
  };
}
