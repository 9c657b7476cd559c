#!/usr/bin/env node
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import {
  createKeySet,
  currentKey,
  DEFAULT_KEY_LENGTH,
  isKeyLength,
  KeySetError,
  parseKeySet,
  revokeKeySet,
  rotateKeySet,
  serializeKeySet,
  summarizeKeySet,
  type KeySet,
} from './core/keyset.js';
import {
  DEFAULT_ROTATION_INTERVAL_SECONDS,
  DEFAULT_TICKET_LIFETIME_SECONDS,
  defaultKeyLength,
  defaultTicketLifetimeSeconds,
  formatDuration,
  parseDuration,
  PolicyError,
  previousKeysToKeep,
  rotationCost,
  type RotationPolicy,
} from './core/policy.js';
import { RotationError } from './core/rotation.js';
import { DEFAULT_FLAVOR, FLAVORS, isServerFlavor, SERVER_FLAVORS, supportedFlavors } from './flavors/index.js';
import { TLS_VERSIONS, type TlsVersion } from './tls/probe.js';
import { NodeAddressError, parseNodeList } from './verify/nodes.js';
import { formatReport, verifyFleet, type VerifyNode } from './verify/verifier.js';
import { runDemo } from './local/demo.js';
import { writePrivateFile } from './local/private-file.js';
import { undoOnAnyEnd } from './local/teardown.js';

const USAGE = `Usage: ticket-keys <command> [options]

Key set files (key material goes only to --out files, mode 0600, or to a pipe):
  init     [--key-length 80|48] [--out FILE]               a new key set, generation 1
  rotate   [--in FILE] [--out FILE] [policy options]        generation g+1 (--in and --out may be the same file)
  revoke   [--in FILE] [--out FILE]                         every key replaced, nothing retained
  inspect  [--in FILE] [--json]                             generation, key names and states; never material

Verification (any fleet, AWS or not; exit 0 only when everything passed):
  verify   --node [NAME=]HOST:PORT[/SNI] ... | --nodes-file FILE   every node encrypts with the expected key, tickets resume across nodes
           [--expect-key NAME | --key-set FILE] [--tls 1.2,1.3] [--peers K] [--seed N] [--timeout-ms 3000] [--json]

Local mode:
  demo     [--nodes 3] [--rotations 4] [policy options]     real nodes (--flavor) behind HAProxy, rotated while clients resume

Policy options (defaults: every ${formatDuration(DEFAULT_ROTATION_INTERVAL_SECONDS)}; tickets live ${formatDuration(DEFAULT_TICKET_LIFETIME_SECONDS)}, or what the server's keys cover; ${DEFAULT_KEY_LENGTH}-byte keys):
  --rotation-interval DURATION   how often keys rotate (90s, 30m, 12h, 7d, 1h30m)
  --ticket-lifetime DURATION     how long clients may resume a ticket (nginx ssl_session_timeout)
  --key-length 80|48             key size in bytes${Object.values(FLAVORS)
  .filter((flavor) => flavor.keyLengths !== undefined)
  .map((flavor) => ` (${flavor.name}: ${flavor.keyLengths?.join(' or ')} only, its default)`)
  .join('')}
  --flavor ${SERVER_FLAVORS.join('|').padEnd(21)} the server on the nodes (default ${DEFAULT_FLAVOR}${Object.values(FLAVORS)
  .filter((flavor) => flavor.keyCapacity !== undefined)
  .map((flavor) => `; ${flavor.name} holds ${flavor.keyCapacity} key${flavor.keyCapacity === 1 ? '' : 's'}`)
  .join('')})
`;

class UsageError extends Error {}

const OPTIONS = {
  in: { type: 'string' },
  out: { type: 'string' },
  json: { type: 'boolean' },
  'key-length': { type: 'string' },
  flavor: { type: 'string' },
  'rotation-interval': { type: 'string' },
  'ticket-lifetime': { type: 'string' },
  nodes: { type: 'string' },
  node: { type: 'string', multiple: true },
  'nodes-file': { type: 'string' },
  'expect-key': { type: 'string' },
  'key-set': { type: 'string' },
  tls: { type: 'string' },
  peers: { type: 'string' },
  seed: { type: 'string' },
  'timeout-ms': { type: 'string' },
  rotations: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>['values'];

function policyFrom(values: Values): RotationPolicy {
  const flavor = values.flavor ?? DEFAULT_FLAVOR;
  if (!isServerFlavor(flavor)) throw new UsageError(`--flavor ${flavor} is not supported: use ${supportedFlavors()}`);
  const keyLength = values['key-length'] === undefined ? defaultKeyLength(flavor) : Number(values['key-length']);
  if (!isKeyLength(keyLength)) throw new UsageError(`--key-length ${values['key-length']} is not supported: use 80 or 48`);
  const lengths = FLAVORS[flavor].keyLengths;
  if (lengths !== undefined && !lengths.includes(keyLength)) {
    throw new UsageError(`--key-length ${keyLength} is not supported by ${flavor}: use ${lengths.join(' or ')} (or leave it out)`);
  }
  const rotationIntervalSeconds =
    values['rotation-interval'] === undefined ? DEFAULT_ROTATION_INTERVAL_SECONDS : parseDuration(values['rotation-interval'], '--rotation-interval');
  return {
    keyLength,
    flavor,
    rotationIntervalSeconds,
    ticketLifetimeSeconds:
      values['ticket-lifetime'] === undefined
        ? defaultTicketLifetimeSeconds({ keyLength, flavor, rotationIntervalSeconds })
        : parseDuration(values['ticket-lifetime'], '--ticket-lifetime'),
  };
}

function wholeNumber(text: string | undefined, fallback: number, what: string, min: number, max: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < min || value > max) throw new UsageError(`${what} must be a whole number from ${min} to ${max} (got "${text}")`);
  return value;
}

function verifyTargets(values: Values): VerifyNode[] {
  const lines = [...(values.node ?? [])];
  if (values['nodes-file'] !== undefined) {
    let text: string;
    try {
      text = readFileSync(values['nodes-file'], 'utf8');
    } catch (error) {
      throw new UsageError(`cannot read --nodes-file ${values['nodes-file']}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
    }
    lines.push(...text.split('\n').map((line) => line.replace(/#.*/, '').trim()).filter((line) => line !== ''));
  }
  if (lines.length === 0) throw new UsageError('verify needs nodes: --node HOST:PORT (repeat it) or --nodes-file FILE');
  try {
    return parseNodeList(lines);
  } catch (error) {
    if (error instanceof NodeAddressError) throw new UsageError(error.message);
    throw error;
  }
}

function tlsVersions(text: string | undefined): TlsVersion[] {
  if (text === undefined) return [...TLS_VERSIONS];
  const versions = text.split(',').map((part) => `TLSv${part.trim().replace(/^TLSv/i, '')}`);
  const unknown = versions.filter((version) => !(TLS_VERSIONS as readonly string[]).includes(version));
  if (unknown.length > 0 || versions.length === 0) throw new UsageError(`--tls "${text}" must list 1.2 and/or 1.3, comma-separated`);
  return versions as TlsVersion[];
}

async function verify(values: Values): Promise<number> {
  const nodes = verifyTargets(values);
  if (values['expect-key'] !== undefined && values['key-set'] !== undefined) throw new UsageError('give --expect-key or --key-set, not both');
  const expectedKey = values['key-set'] !== undefined ? currentKey(await readKeySet(values['key-set'])).name : values['expect-key'];
  if (expectedKey !== undefined && !/^[0-9a-f]{32}$/.test(expectedKey)) throw new UsageError(`--expect-key "${expectedKey}" is not a key name (32 lowercase hex digits)`);
  const report = await verifyFleet(nodes, {
    versions: tlsVersions(values.tls),
    ...(expectedKey !== undefined ? { expectedKey } : {}),
    ...(values.peers !== undefined ? { peersPerNode: wholeNumber(values.peers, 0, '--peers', 1, 1000) } : {}),
    seed: wholeNumber(values.seed, 1, '--seed', 0, 2 ** 31),
    timeoutMs: wholeNumber(values['timeout-ms'], 3000, '--timeout-ms', 100, 60_000),
  });
  process.stdout.write(`${values.json ? JSON.stringify(report, null, 2) : formatReport(report)}\n`);
  return report.ok ? 0 : 1;
}

/** Standard input to its end, however slowly a pipe fills (readFileSync(0) fails with EAGAIN on an empty non-blocking pipe). */
async function readStandardInput(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

async function readKeySet(path: string | undefined): Promise<KeySet> {
  if (path === undefined && process.stdin.isTTY) {
    throw new UsageError('no key set given: pass --in FILE or pipe a key set to standard input');
  }
  let text: string;
  try {
    text = path === undefined ? await readStandardInput() : readFileSync(path, 'utf8');
  } catch (error) {
    throw new UsageError(`cannot read ${path ?? 'standard input'}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
  }
  return parseKeySet(text);
}

function writeKeySet(set: KeySet, path: string | undefined): void {
  const text = `${serializeKeySet(set)}\n`;
  if (path === undefined) {
    if (process.stdout.isTTY) {
      throw new UsageError('refusing to print key material to a terminal: pass --out FILE or pipe the output');
    }
    process.stdout.write(text);
    return;
  }
  writePrivateFile(path, text);
}

function inspect(set: KeySet, json: boolean): string {
  const summary = summarizeKeySet(set);
  if (json) return JSON.stringify(summary, null, 2);
  return [
    `generation ${summary.generation}, ${summary.keyLength}-byte keys`,
    ...summary.keys.map((key) => `  ${key.state.padEnd(8)} ${key.name}  created ${key.createdAt}`),
  ].join('\n');
}

/**
 * Node has no setrlimit: util-linux's prlimit sets this process's core file limit to 0, so that a
 * crash while it holds keys writes none to a core file. Says so when it cannot.
 */
function disableCoreDumps(): void {
  if (process.platform !== 'linux') return;
  const run = spawnSync('prlimit', ['--pid', String(process.pid), '--core=0:0'], { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
  if (run.status !== 0) process.stderr.write(`ticket-keys: could not turn core dumps off (prlimit: ${run.error?.message ?? run.stderr.trim()}); a crash could write keys to a core file: install util-linux, or run \`ulimit -c 0\` first\n`);
}

export async function main(argv: string[]): Promise<number> {
  undoOnAnyEnd();
  disableCoreDumps();
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (error) {
    process.stderr.write(`ticket-keys: ${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  const [command, ...extra] = positionals;
  if (values.help || command === undefined || command === 'help') {
    process.stdout.write(USAGE);
    return command === undefined && !values.help ? 2 : 0;
  }
  try {
    if (extra.length > 0) throw new UsageError(`unexpected argument(s) ${extra.join(' ')}`);
    switch (command) {
      case 'init': {
        writeKeySet(createKeySet(policyFrom(values).keyLength), values.out);
        return 0;
      }
      case 'rotate': {
        const policy = policyFrom(values);
        const set = await readKeySet(values.in);
        const lengths = FLAVORS[policy.flavor ?? DEFAULT_FLAVOR].keyLengths;
        if (lengths !== undefined && !lengths.includes(set.keyLength)) {
          throw new UsageError(
            `the key set holds ${set.keyLength}-byte keys, which ${policy.flavor} cannot read: make a new set with \`ticket-keys init --flavor ${policy.flavor}\` and cut over to it as in a revocation`,
          );
        }
        if (values['key-length'] !== undefined && policy.keyLength !== set.keyLength) {
          throw new UsageError(`--key-length ${policy.keyLength} differs from the set's ${set.keyLength}: a length change needs \`ticket-keys init\` and a revocation-style cut-over`);
        }
        writeKeySet(rotateKeySet(set, previousKeysToKeep({ ...policy, keyLength: set.keyLength })), values.out);
        const cost = rotationCost(policy);
        if (cost !== undefined) process.stderr.write(`ticket-keys: note: ${cost}\n`);
        return 0;
      }
      case 'revoke': {
        writeKeySet(revokeKeySet(await readKeySet(values.in)), values.out);
        return 0;
      }
      case 'inspect': {
        process.stdout.write(`${inspect(await readKeySet(values.in), values.json ?? false)}\n`);
        return 0;
      }
      case 'verify':
        return await verify(values);
      case 'demo': {
        const ok = await runDemo({
          nodes: wholeNumber(values.nodes, 3, '--nodes', 2, 16),
          rotations: wholeNumber(values.rotations, 4, '--rotations', 1, 50),
          policy: policyFrom(values),
        });
        return ok ? 0 : 1;
      }
      default:
        throw new UsageError(`unknown command "${command}"`);
    }
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`ticket-keys: ${error.message}\n\n${USAGE}`);
      return 2;
    }
    if (error instanceof KeySetError || error instanceof PolicyError || error instanceof RotationError) {
      process.stderr.write(`ticket-keys: ${error.message}\n`);
      return 1;
    }
    throw error;
  }
}

process.exitCode = await main(process.argv.slice(2));
