#!/usr/bin/env node
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
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
  readableKeyLengths,
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
import { command, nearest, UsageError, type Command, type OptionSpecs, type OptionValues } from './cli/options.js';
import { awsRevoke, awsRotate, awsStatus, awsVerify, onAws, refuseLocalOptions, STACK_OPTIONS } from './cli/aws.js';
import { OperatorError } from './aws/stack-operator.js';

const FLAVOR_NOTES = Object.values(FLAVORS)
  .filter((flavor) => flavor.keyCapacity !== undefined)
  .map((flavor) => `${flavor.name} holds ${flavor.keyCapacity} key${flavor.keyCapacity === 1 ? '' : 's'}`)
  .join('; ');

const KEY_OPTIONS = {
  'key-length': {
    kind: 'string',
    value: '80|48',
    help: `key size in bytes (default ${DEFAULT_KEY_LENGTH}${Object.values(FLAVORS)
      .filter((flavor) => flavor.keyLengths !== undefined)
      .map((flavor) => `; ${flavor.name}: ${flavor.keyLengths?.join(' or ')} only, its default`)
      .join('')})`,
  },
  flavor: { kind: 'string', value: SERVER_FLAVORS.join('|'), help: `the server on the nodes (default ${DEFAULT_FLAVOR}; ${FLAVOR_NOTES})` },
} as const satisfies OptionSpecs;

const POLICY_OPTIONS = {
  'rotation-interval': { kind: 'string', value: 'DURATION', help: `how often keys rotate: 90s, 30m, 12h, 7d, 1h30m (default ${formatDuration(DEFAULT_ROTATION_INTERVAL_SECONDS)})` },
  'ticket-lifetime': {
    kind: 'string',
    value: 'DURATION',
    help: `how long clients may resume a ticket, nginx's ssl_session_timeout (default ${formatDuration(DEFAULT_TICKET_LIFETIME_SECONDS)}, or what the server's keys cover)`,
  },
  ...KEY_OPTIONS,
} as const satisfies OptionSpecs;

const INPUT = { in: { kind: 'string', value: 'FILE', help: 'the key set to read (default: standard input)' } } as const satisfies OptionSpecs;
const OUTPUT = { out: { kind: 'string', value: 'FILE', help: 'where to write the key set, mode 0600 (default: standard output, never a terminal)' } } as const satisfies OptionSpecs;

function policyFrom(values: OptionValues<typeof POLICY_OPTIONS>): RotationPolicy {
  const flavor = values.flavor ?? DEFAULT_FLAVOR;
  if (!isServerFlavor(flavor)) throw new UsageError(`--flavor ${flavor} is not supported: use ${supportedFlavors()}`);
  const keyLength = values['key-length'] === undefined ? defaultKeyLength(flavor) : Number(values['key-length']);
  if (!isKeyLength(keyLength)) throw new UsageError(`--key-length ${values['key-length']} is not supported: use 80 or 48`);
  if (!readableKeyLengths(flavor).includes(keyLength)) {
    throw new UsageError(`--key-length ${keyLength} is not supported by ${flavor}: use ${readableKeyLengths(flavor).join(' or ')} (or leave it out)`);
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

const VERIFY_OPTIONS = {
  node: { kind: 'strings', value: '[NAME=]HOST:PORT[/SNI]', help: 'a node to verify (repeat it)' },
  'nodes-file': { kind: 'string', value: 'FILE', help: 'the nodes, one [NAME=]HOST:PORT[/SNI] a line (# starts a comment)' },
  'expect-key': { kind: 'string', value: 'NAME', help: 'the key every node must encrypt with (default: the key most nodes use)' },
  'key-set': { kind: 'string', value: 'FILE', help: "expect the current key of this key set (only its key names are read)" },
  tls: { kind: 'string', value: '1.2,1.3', help: 'the TLS versions to check (default both)' },
  peers: { kind: 'string', value: 'K', help: 'other nodes each ticket is tried on (default: every other node up to 12 nodes, else 6)' },
  seed: { kind: 'string', value: 'N', help: 'the seed of the choice of peers (default 1)' },
  'timeout-ms': { kind: 'string', value: 'MS', help: 'per connection (default 3000)' },
  json: { kind: 'boolean', help: 'the report as JSON' },
} as const satisfies OptionSpecs;

function verifyTargets(values: OptionValues<typeof VERIFY_OPTIONS>): VerifyNode[] {
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

async function verify(values: OptionValues<typeof VERIFY_OPTIONS>): Promise<number> {
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
  try {
    writePrivateFile(path, text);
  } catch (error) {
    throw new Refused(`cannot write ${path} (${(error as NodeJS.ErrnoException).code ?? String(error)}): give --out a file in a directory you can write`);
  }
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

/** One line for what a command wrote, on standard error (standard output may be the key set itself). */
function reportWritten(set: KeySet, path: string | undefined): void {
  const names = set.keys.map((key) => `${key.state} ${key.name}`).join(', ');
  process.stderr.write(`ticket-keys: wrote generation ${set.generation} to ${path ?? 'standard output'}: ${names}\n`);
}

const COMMANDS: Record<string, Command> = {
  init: command('init', {
    summary: 'a new key set, generation 1',
    options: { ...KEY_OPTIONS, ...OUTPUT, force: { kind: 'boolean', help: 'replace an existing --out file (and every key in it)' } },
    async run(values) {
      if (values.out !== undefined && !values.force && existsSync(values.out)) {
        throw new Refused(`--out ${values.out} exists: init would replace the key set there and every key in it; nothing changed: choose another file, or pass --force to replace it`);
      }
      const set = createKeySet(policyFrom(values).keyLength);
      writeKeySet(set, values.out);
      reportWritten(set, values.out);
      return 0;
    },
  }),
  rotate: command('rotate', {
    summary: 'generation g+1 of a key set (--in and --out may be the same file), or, with --stack, a rotation of the deployed stack',
    options: { ...INPUT, ...OUTPUT, ...POLICY_OPTIONS, ...STACK_OPTIONS },
    async run(values) {
      if (onAws(values)) {
        refuseLocalOptions('rotate', values, ['in', 'out', 'rotation-interval', 'ticket-lifetime', 'key-length', 'flavor']);
        return awsRotate(values);
      }
      const policy = policyFrom(values);
      const set = await readKeySet(values.in);
      if (!readableKeyLengths(policy.flavor).includes(set.keyLength)) {
        throw new UsageError(
          `the key set holds ${set.keyLength}-byte keys, which ${policy.flavor} cannot read: make a new set with \`ticket-keys init --flavor ${policy.flavor}\` and cut over to it as in a revocation`,
        );
      }
      if (values['key-length'] !== undefined && policy.keyLength !== set.keyLength) {
        throw new UsageError(`--key-length ${policy.keyLength} differs from the set's ${set.keyLength}: a length change needs \`ticket-keys init\` and a revocation-style cut-over`);
      }
      const rotated = rotateKeySet(set, previousKeysToKeep({ ...policy, keyLength: set.keyLength }));
      writeKeySet(rotated, values.out);
      reportWritten(rotated, values.out);
      const cost = rotationCost(policy);
      if (cost !== undefined) process.stderr.write(`ticket-keys: note: ${cost}\n`);
      return 0;
    },
  }),
  revoke: command('revoke', {
    summary: 'every key replaced, nothing retained; with --stack, the deployed stack\'s revocation',
    options: { ...INPUT, ...OUTPUT, ...STACK_OPTIONS, reason: { kind: 'string', value: 'TEXT', help: 'with --stack: who asks and why ("alice: INC-4711"), kept in the RevokeTicketKeys tag' } },
    async run(values) {
      if (onAws(values)) {
        refuseLocalOptions('revoke', values, ['in', 'out']);
        return awsRevoke(values);
      }
      if (values.reason !== undefined) throw new UsageError('--reason is for revoke --stack: a key set file keeps no reason');
      const revoked = revokeKeySet(await readKeySet(values.in));
      writeKeySet(revoked, values.out);
      reportWritten(revoked, values.out);
      return 0;
    },
  }),
  inspect: command('inspect', {
    summary: 'generation, key names and states of a key set; never key material',
    options: { ...INPUT, json: { kind: 'boolean', help: 'as JSON' } },
    async run(values) {
      process.stdout.write(`${inspect(await readKeySet(values.in), values.json ?? false)}\n`);
      return 0;
    },
  }),
  verify: command('verify', {
    summary: 'any fleet, AWS or not: every node encrypts with the expected key and tickets resume across nodes (exit 0 only when all passed); with --stack, the stack\'s verifier function',
    options: { ...VERIFY_OPTIONS, ...STACK_OPTIONS },
    async run(values) {
      if (onAws(values)) {
        refuseLocalOptions('verify', values, ['node', 'nodes-file', 'expect-key', 'key-set', 'tls', 'peers', 'seed', 'timeout-ms']);
        return awsVerify(values);
      }
      return verify(values);
    },
  }),
  status: command('status', {
    summary: 'a deployed stack: its key versions and names, rotation in flight, last step, revocation, and each node\'s generation',
    options: {
      ...STACK_OPTIONS,
      'skip-nodes': { kind: 'boolean', help: 'leave out the nodes\' status round (an SSM command to every tagged node)' },
      json: { kind: 'boolean', help: 'as JSON' },
    },
    async run(values) {
      if (!onAws(values)) throw new UsageError('status needs --stack NAME or --secret-id ARN: a key set file has `ticket-keys inspect`');
      return awsStatus(values);
    },
  }),
  demo: command('demo', {
    summary: 'the local mode: real nodes behind HAProxy, rotated while clients keep resuming',
    options: {
      nodes: { kind: 'string', value: 'N', help: 'how many nodes, 2 to 16 (default 3)' },
      rotations: { kind: 'string', value: 'N', help: 'how many rotations, 1 to 50 (default 4)' },
      ...POLICY_OPTIONS,
    },
    async run(values) {
      const ok = await runDemo({
        nodes: wholeNumber(values.nodes, 3, '--nodes', 2, 16),
        rotations: wholeNumber(values.rotations, 4, '--rotations', 1, 50),
        policy: policyFrom(values),
      });
      return ok ? 0 : 1;
    },
  }),
};

const USAGE = `Usage: ticket-keys <command> [options]

${Object.entries(COMMANDS)
  .map(([name, entry]) => `  ${name.padEnd(8)} ${entry.summary}`)
  .join('\n')}

Key material goes only to --out files (mode 0600) or to a pipe, never to a terminal.
\`ticket-keys <command> --help\` lists a command's options.
`;

/** A refusal that changed nothing: its message alone, exit 1. */
class Refused extends Error {}

export async function main(argv: string[]): Promise<number> {
  undoOnAnyEnd();
  disableCoreDumps();
  const [name, ...rest] = argv;
  if (name === undefined) {
    process.stderr.write(USAGE);
    return 2;
  }
  if (name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  try {
    const chosen = COMMANDS[name];
    if (chosen === undefined) {
      const close = nearest(name, Object.keys(COMMANDS));
      throw new UsageError(`unknown command "${name}"${close ? ` (did you mean ${close}?)` : ''}: the commands are ${Object.keys(COMMANDS).join(', ')}; see \`ticket-keys --help\``);
    }
    return await chosen.run(rest);
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`ticket-keys: ${error.message}\n`);
      return 2;
    }
    if (error instanceof KeySetError || error instanceof PolicyError || error instanceof RotationError || error instanceof Refused || error instanceof OperatorError) {
      process.stderr.write(`ticket-keys: ${error.message}\n`);
      return 1;
    }
    // An AWS service's refusal (access denied, throttled): its name and message, not a stack trace.
    if (error instanceof Error && '$metadata' in error) {
      process.stderr.write(`ticket-keys: AWS answered ${error.name}: ${error.message}\n`);
      return 1;
    }
    throw error;
  }
}

process.exitCode = await main(process.argv.slice(2));
