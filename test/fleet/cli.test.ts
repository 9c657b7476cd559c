import { makeMemoryDirectory } from '../../src/local/fleet.js';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseKeySet } from '../../src/core/keyset.js';
import { expectNoMaterial } from '../support/helpers.js';

const CLI = join(import.meta.dirname, '..', '..', 'dist', 'src', 'cli.js');

function cli(args: string[], input?: string): { status: number; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [CLI, ...args], { input: input ?? '', encoding: 'utf8', timeout: 120_000 });
  return { status: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}

describe('ticket-keys CLI', () => {
  let dir: string;
  beforeAll(() => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first (npm test does)`);
    dir = makeMemoryDirectory('cli-test-');
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('init, rotate in place, revoke and inspect a key set file; inspect never prints material', () => {
    const file = join(dir, 'keys.json');
    expect(cli(['init', '--out', file]).status).toBe(0);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const first = parseKeySet(readFileSync(file, 'utf8'));
    expect(cli(['rotate', '--in', file, '--out', file, '--rotation-interval', '6h', '--ticket-lifetime', '18h']).status).toBe(0);
    const second = parseKeySet(readFileSync(file, 'utf8'));
    expect(second.generation).toBe(2);
    const inspect = cli(['inspect', '--in', file]);
    expect(inspect.status).toBe(0);
    expect(inspect.stdout).toMatch(new RegExp(`generation 2, 80-byte keys\\n  current  ${second.keys[0]!.name}`));
    expect(inspect.stdout).toContain(`previous ${first.keys[0]!.name}`);
    const json = JSON.parse(cli(['inspect', '--json'], readFileSync(file, 'utf8')).stdout);
    expect(json.keys.map((key: { state: string }) => key.state)).toEqual(['current', 'next', 'previous']);
    expectNoMaterial(inspect.stdout + JSON.stringify(json), [first, second]);
    const revoked = cli(['revoke'], readFileSync(file, 'utf8'));
    expect(revoked.status).toBe(0);
    const third = parseKeySet(revoked.stdout);
    expect(third.generation).toBe(3);
    expect(third.keys.map((key) => key.name)).not.toContain(second.keys[0]!.name);
  });

  it('reads a key set from a pipe that fills slowly (as `aws secretsmanager get-secret-value … |` does)', () => {
    const file = join(dir, 'slow.json');
    expect(cli(['init', '--out', file]).status).toBe(0);
    const run = spawnSync('bash', ['-c', '(sleep 0.5; cat "$1") | "$2" "$3" inspect', '_', file, process.execPath, CLI], { encoding: 'utf8' });
    expect(run.stderr).toBe('');
    expect(run.stdout).toMatch(/^generation 1, 80-byte keys/);
  });

  it('makes 48-byte keys on request', () => {
    const set = parseKeySet(cli(['init', '--key-length', '48']).stdout);
    expect(Buffer.from(set.keys[0]!.material, 'base64')).toHaveLength(48);
  });

  it('refuses bad input with a clear message, exit 1, and leaves the file as it was', () => {
    const file = join(dir, 'bad.json');
    writeFileSync(file, '{"format":"tls-ticket-keyset","version":7}');
    const result = cli(['rotate', '--in', file, '--out', file]);
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/key set version 7 is not supported/);
    expect(readFileSync(file, 'utf8')).toBe('{"format":"tls-ticket-keyset","version":7}');
  });

  it('refuses an impossible policy, naming what to change', () => {
    const set = cli(['init']).stdout;
    const result = cli(['rotate', '--rotation-interval', '1m', '--ticket-lifetime', '7d'], set);
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/rotation interval too short for client session lifetime.*Rotate no more often than every/);
    expect(result.stdout).toBe('');
  });

  it('knows HAProxy holds three keys: an interval shorter than the ticket lifetime is refused for it, not for nginx', () => {
    const set = cli(['init']).stdout;
    const haproxy = cli(['rotate', '--flavor', 'haproxy', '--rotation-interval', '6h', '--ticket-lifetime', '18h'], set);
    expect(haproxy.status).toBe(1);
    expect(haproxy.stderr).toMatch(/haproxy holds at most 3 keys \(1 previous, current and next\)\. Rotate no more often than every 18h, or shorten the ticket lifetime to at most 6h/);
    expect(cli(['rotate', '--flavor', 'nginx', '--rotation-interval', '6h', '--ticket-lifetime', '18h'], set).status).toBe(0);
    expect(cli(['rotate', '--flavor', 'caddy'], set).stderr).toMatch(/--flavor caddy is not supported: use nginx, haproxy or apache/);
  });

  it('answers usage errors with exit 2 and one line that says what to do, not the whole usage', () => {
    const unknown = cli(['rotat']);
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toBe('ticket-keys: unknown command "rotat" (did you mean rotate?): the commands are init, rotate, revoke, inspect, verify, status, demo; see `ticket-keys --help`\n');
    expect(cli([]).stderr).toMatch(/^Usage: ticket-keys <command> \[options\]\n\n {2}init /);
    expect(cli(['init', '--key-length', '64']).stderr).toMatch(/--key-length 64 is not supported: use 80 or 48/);
    expect(cli(['demo', '--nodes', '100']).stderr).toMatch(/--nodes must be a whole number from 2 to 16/);
  });

  it('takes only each command\'s own options, names a wrong one with the nearest valid one, and points to its --help', () => {
    for (const [args, message] of [
      [['demo', '--node', '5'], 'ticket-keys: demo has no option --node (did you mean --nodes?): see `ticket-keys demo --help`\n'],
      [['inspect', '--nodes', '4'], 'ticket-keys: inspect has no option --nodes: see `ticket-keys inspect --help`\n'],
      [['demo', '--json'], 'ticket-keys: demo has no option --json: see `ticket-keys demo --help`\n'],
      [['init', '--out'], 'ticket-keys: --out needs a value (FILE); see `ticket-keys init --help`\n'],
      [['init', '--out', '--force'], 'ticket-keys: --out needs a value (FILE); see `ticket-keys init --help`\n'],
      [['verify', '--node-file', 'nodes.txt'], 'ticket-keys: verify has no option --node-file (did you mean --nodes-file?): see `ticket-keys verify --help`\n'],
      [['status', '--stack', 'A', '--secret-id', 'B'], 'ticket-keys: give --stack or --secret-id, not both: the stack names its secret\n'],
      [['inspect', '--json=yes'], 'ticket-keys: --json takes no value; see `ticket-keys inspect --help`\n'],
      [['inspect', 'keys.json'], 'ticket-keys: inspect takes no argument "keys.json": give everything as an option; see `ticket-keys inspect --help`\n'],
    ] as const) {
      const result = cli([...args]);
      expect(result.status, args.join(' ')).toBe(2);
      expect(result.stderr, args.join(' ')).toBe(message);
      expect(result.stdout, args.join(' ')).toBe('');
    }
    const help = cli(['init', '--help']);
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/^Usage: ticket-keys init \[options\]: a new key set, generation 1\n/);
    expect(help.stdout).toContain('--force');
    expect(help.stdout).not.toContain('--nodes');
  });

  it('init refuses to replace an existing file unless --force; rotate and revoke write in place and say what they wrote', () => {
    const file = join(dir, 'live.json');
    expect(cli(['init', '--out', file]).stderr).toMatch(/^ticket-keys: wrote generation 1 to .*live\.json: current [0-9a-f]{32}, next [0-9a-f]{32}\n$/);
    const live = readFileSync(file, 'utf8');
    const again = cli(['init', '--out', file]);
    expect(again.status).toBe(1);
    expect(again.stderr).toBe(`ticket-keys: --out ${file} exists: init would replace the key set there and every key in it; nothing changed: choose another file, or pass --force to replace it\n`);
    expect(readFileSync(file, 'utf8')).toBe(live);
    const unwritable = cli(['init', '--out', join(dir, 'no-such-dir', 'keys.json')]);
    expect(unwritable.status).toBe(1);
    expect(unwritable.stderr).toBe(`ticket-keys: cannot write ${join(dir, 'no-such-dir', 'keys.json')} (ENOENT): give --out a file in a directory you can write\n`);
    expect(cli(['init', '--out', file, '--force']).status).toBe(0);
    expect(readFileSync(file, 'utf8')).not.toBe(live);
    const rotated = cli(['rotate', '--in', file, '--out', file]);
    const second = parseKeySet(readFileSync(file, 'utf8'));
    expect(rotated.stderr).toBe(`ticket-keys: wrote generation 2 to ${file}: ${second.keys.map((key) => `${key.state} ${key.name}`).join(', ')}\n`);
    const revoked = cli(['revoke', '--in', file]);
    expect(revoked.stderr).toBe(`ticket-keys: wrote generation 3 to standard output: ${parseKeySet(revoked.stdout).keys.map((key) => `${key.state} ${key.name}`).join(', ')}\n`);
    expectNoMaterial(rotated.stderr + revoked.stderr, [second, parseKeySet(revoked.stdout)]);
  });

  it('demo: rotations on a real fleet while clients keep resuming, and exit 0', () => {
    const result = cli(['demo', '--rotations', '2']);
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    const lines = result.stdout.split('\n');
    expect(
      lines.filter((line) =>
        /^rotation \d+ +generation \d+ .*nodes 3\/3 applied .*verified: 3\/3 on current key, cross-node 12\/12, tickets from before 18\/18; clients resumed (\d+)\/\1$/.test(line),
      ),
    ).toHaveLength(2);
    expect(result.stdout).toMatch(/Summary: 2 rotation\(s\) to generation 3; resumed (\d+)\/\1 .*connection errors 0/);
    expect(result.stdout).toContain('PASS');
  });

  it('apache: 48-byte keys by default, the cost of each rotation said, and a demo that pays it and resumes everywhere between rotations', () => {
    const set = cli(['init', '--flavor', 'apache']).stdout;
    expect(JSON.parse(set)).toMatchObject({ keyLength: 48 });
    const eighty = cli(['init', '--flavor', 'apache', '--key-length', '80']);
    expect(eighty.status).toBe(2);
    expect(eighty.stdout).toBe('');
    expect(eighty.stderr).toMatch(/^ticket-keys: --key-length 80 is not supported by apache: use 48 \(or leave it out\)\n/);
    const nginxSet = cli(['init']).stdout;
    const onApache = cli(['rotate', '--flavor', 'apache'], nginxSet);
    expect(onApache.status).toBe(2);
    expect(onApache.stderr).toMatch(/^ticket-keys: the key set holds 80-byte keys, which apache cannot read: make a new set with `ticket-keys init --flavor apache` and cut over to it as in a revocation\n/);
    const rotated = cli(['rotate', '--flavor', 'apache'], set);
    expect(rotated.status).toBe(0);
    expect(rotated.stderr).toMatch(/\nticket-keys: note: apache holds one ticket key, with no previous or next key beside it: every rotation costs each client a full handshake/);
    expect(cli(['rotate', '--flavor', 'nginx'], set).stderr).not.toMatch(/note:/);
    expect(cli(['rotate', '--flavor', 'apache', '--rotation-interval', '30m'], set).stderr).toMatch(/rotation interval 30m is too short for apache/);
    const demo = cli(['demo', '--flavor', 'apache', '--nodes', '2', '--rotations', '2']);
    expect(demo.stderr).toBe('');
    expect(demo.status).toBe(0);
    expect(demo.stdout).toContain('Cost: apache holds one ticket key');
    const rotations = demo.stdout
      .split('\n')
      .map((line) => /^rotation \d+ .*verified: 2\/2 on current key, cross-node 4\/4, tickets from before fell back to a full handshake 8\/8; clients resumed \d+\/\d+, then (\d+)\/(\d+) once each client had its new ticket$/.exec(line))
      .filter((match) => match !== null);
    expect(rotations).toHaveLength(2);
    for (const match of rotations) expect(match[1]).toBe(match[2]);
    expect(demo.stdout).toMatch(/full handshakes instead of resumption [1-9]\d*; connection errors 0; between rotations resumed (\d+)\/\1\n/);
    expect(demo.stdout).toContain("PASS: between rotations every client resumed on every node, and the verifier found every node on the current key; each rotation cost each client full handshakes, as apache's one key must.");
  });
});
