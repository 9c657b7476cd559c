// Fault matrix, the attacker's column: what a non-root user on a node, or a server command the
// applier runs, can do to the key set. Each case is a reproduction from the security review;
// the applier, --status, onboarding and the CLI refuse or heal, and nothing is written outside
// the key directory.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, lstatSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { currentKey, serializeKeySet, type KeySet } from '../../src/core/keyset.js';
import { nodeApplierArgs, nodeOnboardingArgs, runApplier, runOnboarding } from '../../src/local/applier.js';
import { APPLIER_PATH } from '../../src/project-paths.js';
import { makeMemoryDirectory, startLocalFleet, type FleetNode, type LocalFleet } from '../../src/local/fleet.js';
import { applyTo, expectNoMaterial, freshTicket, lineage, resumes } from '../support/helpers.js';

const NOBODY = 65534;
const CLI = join(import.meta.dirname, '..', '..', 'dist', 'src', 'cli.js');

/** Runs a shell command as another user (nobody), as a local attacker on the node would. */
function asAttacker(command: string): string {
  return execFileSync('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', 'bash', '-c', command], { encoding: 'utf8' });
}

beforeAll(() => {
  if (process.getuid?.() !== 0) throw new Error('the attacker tests act as another user (setpriv) and check ownership: run them as root, as .ci/run does');
});

describe('a server command started by the applier', () => {
  let fleet: LocalFleet;
  let node: FleetNode;
  const [gen1, gen2] = lineage(2) as [KeySet, KeySet];

  beforeAll(async () => {
    fleet = await startLocalFleet({ nodeCount: 1 });
    node = fleet.nodes[0] as FleetNode;
  });
  afterAll(async () => {
    await fleet?.stop();
  });

  it('does not inherit the lock: a reload that leaves a daemon behind (haproxy -D -sf) does not block the next rotation', async () => {
    const pidFile = join(fleet.baseDir, 'daemon.pid');
    // A daemon that keeps every descriptor its reload gave it, as `haproxy -D` does.
    const daemonizingReload = `${node.reloadCommand} && { setsid sleep 300 >/dev/null 2>&1 </dev/null & echo $! >${pidFile}; }`;
    try {
      expect((await applyTo(fleet, node, gen1, ['--reload-cmd', daemonizingReload])).exitCode).toBe(0);
      expect(existsSync(pidFile)).toBe(true);
      const next = await applyTo(fleet, node, gen2, ['--lock-timeout', '1']);
      expect(next.summary.error ?? '').toBe('');
      expect(next.summary).toMatchObject({ action: 'applied', generation: 2 });
    } finally {
      if (existsSync(pidFile)) execFileSync('kill', [readFileSync(pidFile, 'utf8').trim()]);
    }
  });

  it('runs with core dumps off, and so does every command it starts: a crash writes no key to a core file', () => {
    const limitFile = join(fleet.baseDir, 'core-limit');
    const args = [...nodeApplierArgs(node), '--allow-downgrade', '--test-cmd', `ulimit -c >${limitFile}; ${node.testCommand}`];
    // Started with core dumps allowed, as a shell with `ulimit -c unlimited` would start it.
    const run = spawnSync('bash', ['-c', 'ulimit -c unlimited && exec bash "$0" "$@"', APPLIER_PATH, ...args], { input: serializeKeySet(gen1), encoding: 'utf8' });
    expect(run.status, run.stderr).toBe(0);
    expect(readFileSync(limitFile, 'utf8').trim()).toBe('0');
  });
});

describe('the CLI writing a key set into a directory others can write to', () => {
  let shared: string;
  beforeAll(() => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first (npm test does)`);
    shared = makeMemoryDirectory('shared-');
    chmodSync(shared, 0o1777);
  });
  afterAll(() => rmSync(shared, { recursive: true, force: true }));

  it('turns core dumps off while it runs: a crash writes no key to a core file', async () => {
    // Started with core dumps allowed; `inspect` then waits for a key set on its standard input.
    const child = spawn('bash', ['-c', 'ulimit -c unlimited && exec "$0" "$@"', process.execPath, CLI, 'inspect'], { stdio: ['pipe', 'ignore', 'ignore'] });
    const closed = new Promise((resolve) => child.once('close', resolve));
    try {
      const coreLimit = (): string | undefined => /^Max core file size\s+(\S+)\s+(\S+)/m.exec(readFileSync(`/proc/${child.pid}/limits`, 'utf8'))?.slice(1).join(' ');
      const deadline = Date.now() + 10_000;
      while (coreLimit() !== '0 0' && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
      expect(coreLimit()).toBe('0 0');
    } finally {
      child.stdin.end('');
      await closed;
    }
  });

  it('never writes key material into a file another user planted, and leaves --out 0600 and its own', () => {
    const out = join(shared, 'keys.json');
    // The attacker plants files under every temporary name they can predict: the old one was
    // <out>.tmp-<pid>, and `exec` keeps the shell's pid for the CLI.
    const run = spawnSync('bash', ['-c', `setpriv --reuid=${NOBODY} --regid=${NOBODY} --clear-groups bash -c 'umask 0; : >"$1.tmp-$2"; : >"$1.tmp"' _ "$1" "$$" && exec "$2" "$3" init --out "$1"`, '_', out, process.execPath, CLI], { encoding: 'utf8' });
    expect(run.status, run.stderr).toBe(0);
    const written = statSync(out);
    expect(written.uid).toBe(0);
    expect(written.mode & 0o777).toBe(0o600);
    const set = JSON.parse(readFileSync(out, 'utf8')) as KeySet;
    for (const entry of readdirSync(shared)) {
      const path = join(shared, entry);
      if (statSync(path).uid === NOBODY) expectNoMaterial(readFileSync(path, 'utf8'), [set]);
    }
    expect(readdirSync(shared).filter((entry) => statSync(join(shared, entry)).uid === NOBODY)).not.toHaveLength(0);
    expect(asAttacker(`cat ${out} 2>&1 || true`)).toMatch(/Permission denied/);
  });
});

/** The applier's options for `node`, with another key directory (and the include in it). */
function withKeyDir(node: FleetNode, keyDir: string, base: string[] = nodeApplierArgs(node)): string[] {
  const args = [...base];
  args[args.indexOf('--key-dir') + 1] = keyDir;
  args[args.indexOf('--include') + 1] = join(keyDir, 'ticket-keys.conf');
  return args;
}

describe('a key directory another user can reach, on a real nginx node', () => {
  let fleet: LocalFleet;
  let node: FleetNode;
  let peer: FleetNode;
  let victimDir: string;
  const [gen1, gen2] = lineage(2) as [KeySet, KeySet];
  const attackerKey = randomBytes(80);

  beforeAll(async () => {
    fleet = await startLocalFleet({ nodeCount: 2 });
    [node, peer] = fleet.nodes as [FleetNode, FleetNode];
    for (const each of fleet.nodes) expect((await applyTo(fleet, each, gen1)).exitCode).toBe(0);
    victimDir = mkdtempSync(join(fleet.memoryDir, 'victim-'));
  });
  afterAll(async () => {
    await fleet?.stop();
  });

  /** A file only root can read, that the applier must never write through a symlink. */
  const victimFile = (): string => {
    const path = join(victimDir, `root-only-${randomBytes(4).toString('hex')}`);
    writeFileSync(path, 'root only\n', { mode: 0o600 });
    return path;
  };

  it('refuses a key directory another user made in a shared tmpfs (/dev/shm), with an include and symlinks planted in it, writing nothing anywhere', async () => {
    const shared = `/dev/shm/ticket-keys-attack-${randomBytes(4).toString('hex')}`;
    const victim = victimFile();
    const throughLock = join(victimDir, 'created-through-lock');
    try {
      asAttacker(
        [
          `mkdir ${shared} && chmod 777 ${shared}`,
          `head -c 80 /dev/urandom >${shared}/attacker.key`,
          `echo 'ssl_session_ticket_key ${shared}/attacker.key;' >${shared}/a.conf`,
          `ln -s ${throughLock} ${shared}/.lock`,
          `ln -s ${victim} ${shared}/active.json.tmp`,
        ].join(' && '),
      );
      const args = withKeyDir(node, shared);
      const applied = await runApplier(args, serializeKeySet(gen2));
      expect(applied.exitCode, applied.stderr).toBe(2);
      expect(applied.summary.error).toMatch(/--key-dir \/dev\/shm\/ticket-keys-attack-\w+ is owned by uid 65534, not root: that user could plant or swap the files the server loads; nothing changed/);
      const status = await runApplier([...args, '--status']);
      expect(status.summary).toMatchObject({ action: 'damaged' });
      expect(status.summary.error).toMatch(/owned by uid 65534/);
      const onboarding = runOnboarding(withKeyDir(node, shared, nodeOnboardingArgs(node)));
      expect(onboarding.exitCode).toBe(3);
      expect(onboarding.summary.error).toMatch(/owned by uid 65534/);
      expect(readFileSync(victim, 'utf8')).toBe('root only\n');
      expect(existsSync(throughLock)).toBe(false);
      expect(readdirSync(shared).sort()).toEqual(['.lock', 'a.conf', 'active.json.tmp', 'attacker.key']);
      expect(statSync(shared).mode & 0o777).toBe(0o777);
      expect((await freshTicket(node, 'TLSv1.3')).keyName).toBe(currentKey(gen1).name);
    } finally {
      rmSync(shared, { recursive: true, force: true });
    }
  });

  it('refuses a key directory, or a parent, that others can write to, and one owned by the web server\'s user', async () => {
    const open = mkdtempSync(join(fleet.memoryDir, 'open-'));
    chmodSync(open, 0o777);
    const underOpen = join(open, 'keys');
    const serverOwned = mkdtempSync(join(fleet.memoryDir, 'www-'));
    execFileSync('chown', [String(NOBODY), serverOwned]);
    for (const [keyDir, message] of [
      [open, /--key-dir \S+ is writable by others/],
      [underOpen, /its parent \S+open-\w+ is writable by others/],
      [serverOwned, /--key-dir \S+ is owned by uid 65534, not root/],
    ] as const) {
      const run = await runApplier(withKeyDir(node, keyDir), serializeKeySet(gen2));
      expect(run.exitCode, keyDir).toBe(2);
      expect(run.summary.error, keyDir).toMatch(message);
    }
    expect(readdirSync(open)).toEqual([]);
    expect(readdirSync(serverOwned)).toEqual([]);
  });

  it('names a file it did not write in the key directory (--status: damaged), and the next apply removes it', async () => {
    const attackerFile = join(victimDir, 'attacker.key');
    writeFileSync(attackerFile, attackerKey, { mode: 0o600 });
    const planted = join(node.keyDir, 'a.conf');
    writeFileSync(planted, `ssl_session_ticket_key ${attackerFile};\n`);
    const status = await runApplier([...nodeApplierArgs(node), '--status']);
    expect(status.summary).toMatchObject({ action: 'damaged', generation: 1 });
    expect(status.summary.error).toMatch(/the key directory holds a\.conf, which the applier did not write/);
    // The include names the managed file alone: nginx does not load the planted one.
    execFileSync('bash', ['-c', node.reloadCommand]);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect((await freshTicket(node, 'TLSv1.3')).keyName).toBe(currentKey(gen1).name);
    const healed = await applyTo(fleet, node, gen1);
    expect(healed.summary).toMatchObject({ action: 'applied', generation: 1, removed: ['a.conf'] });
    expect(existsSync(planted)).toBe(false);
    expect((await runApplier([...nodeApplierArgs(node), '--status'])).summary.action).toBe('active');
  });

  it('names a key file whose name was kept and material swapped, and applying the set again repairs it (not "two writers")', async () => {
    const state = JSON.parse(readFileSync(join(node.keyDir, 'active.json'), 'utf8')) as { dir: string };
    const keyFile = join(state.dir, readdirSync(state.dir).sort()[0] as string);
    const swapped = Buffer.concat([readFileSync(keyFile).subarray(0, 16), randomBytes(64)]);
    writeFileSync(keyFile, swapped);
    const status = await runApplier([...nodeApplierArgs(node), '--status']);
    expect(status.summary).toMatchObject({ action: 'damaged', generation: 1 });
    expect(status.summary.error).toMatch(/key file 00-\w+\.key holds other material than the recorded set/);
    // Loaded, the swapped key breaks resumption across nodes: the damage is real.
    const workers = fleet.workerPids(node);
    execFileSync('bash', ['-c', node.reloadCommand]);
    await fleet.waitForReload(node, workers);
    expect(await resumes(peer, (await freshTicket(node, 'TLSv1.2')).session, 'TLSv1.2')).toBe(false);
    const healed = await applyTo(fleet, node, gen1);
    expect(healed.exitCode, healed.summary.error).toBe(0);
    expect(healed.summary.action).toBe('applied');
    expect(healed.stderr).toMatch(/generation 1 is active but damaged \(key file 00-\w+\.key holds other material than the recorded set\): applying it again/);
    expect(await resumes(peer, (await freshTicket(node, 'TLSv1.2')).session, 'TLSv1.2')).toBe(true);
  });

  it('removes symlinks it finds in the key directory without following them: nothing outside is deleted, overwritten or created', async () => {
    const victim = victimFile();
    const victimTree = mkdtempSync(join(victimDir, 'tree-'));
    writeFileSync(join(victimTree, 'precious'), 'keep me\n');
    const throughLock = join(victimDir, 'created-through-lock');
    symlinkSync(victimTree, join(node.keyDir, 'gen-7.planted'));
    symlinkSync(victim, join(node.keyDir, 'active.json.tmp'));
    rmSync(join(node.keyDir, '.lock'));
    symlinkSync(throughLock, join(node.keyDir, '.lock'));
    const run = await applyTo(fleet, node, gen2);
    expect(run.exitCode, run.summary.error).toBe(0);
    expect(readFileSync(join(victimTree, 'precious'), 'utf8')).toBe('keep me\n');
    expect(readFileSync(victim, 'utf8')).toBe('root only\n');
    expect(existsSync(throughLock)).toBe(false);
    const entries = readdirSync(node.keyDir).sort();
    expect(entries.filter((entry) => !entry.startsWith('gen-'))).toEqual(['.lock', 'active.json', 'ticket-keys.conf']);
    expect(entries.filter((entry) => entry.startsWith('gen-'))).toHaveLength(1);
    expect(lstatSync(join(node.keyDir, '.lock')).isFile()).toBe(true);
    expect((await freshTicket(node, 'TLSv1.3')).keyName).toBe(currentKey(gen2).name);
  });

  it('onboarding writes its own HAProxy keys through a new temporary file, never through a planted symlink', () => {
    const keyDir = mkdtempSync(join(fleet.memoryDir, 'haproxy-keys-'));
    const victim = victimFile();
    symlinkSync(victim, join(keyDir, 'tls-ticket-keys.tmp'));
    const run = runOnboarding(['--prestart', '--flavor', 'haproxy', '--key-dir', keyDir, '--tmpfiles-dir', 'none', '--systemd-dir', 'none']);
    expect(run.exitCode, run.summary.error).toBe(0);
    expect(run.summary.keySource).toBe('own');
    expect(readFileSync(victim, 'utf8')).toBe('root only\n');
    expect(readFileSync(join(keyDir, 'tls-ticket-keys'), 'utf8').trim().split('\n')).toHaveLength(3);
    expect(statSync(join(keyDir, 'tls-ticket-keys')).mode & 0o777).toBe(0o600);
  });
});

describe('HAProxy\'s runtime API socket, where `show tls-keys` prints the keys', () => {
  let fleet: LocalFleet;
  let node: FleetNode;
  const [gen1, gen2] = lineage(2) as [KeySet, KeySet];

  beforeAll(async () => {
    fleet = await startLocalFleet({ nodeCount: 1, flavor: 'haproxy' });
    node = fleet.nodes[0] as FleetNode;
    expect((await applyTo(fleet, node, gen1, ['--runtime-socket', node.runtimeSocket as string])).exitCode).toBe(0);
  });
  afterAll(async () => {
    await fleet?.stop();
  });

  it('is refused when others can connect to it, changing nothing, with how to declare it', async () => {
    const socket = node.runtimeSocket as string;
    const before = readFileSync(node.includeFile, 'utf8');
    try {
      for (const [prepare, message] of [
        [() => chmodSync(socket, 0o666), /--runtime-socket \S+ lets every user on the node connect \(mode 666\)/],
        [() => { chmodSync(socket, 0o660); execFileSync('chgrp', [String(NOBODY), socket]); }, /--runtime-socket \S+ lets group 65534 connect \(mode 660\)/],
      ] as const) {
        prepare();
        const run = await applyTo(fleet, node, gen2, ['--runtime-socket', socket]);
        expect(run.exitCode).toBe(2);
        expect(run.summary.error).toMatch(message);
        expect(run.summary.error).toMatch(/declare it `stats socket \S+ mode 600 level admin`/);
        expect(readFileSync(node.includeFile, 'utf8')).toBe(before);
      }
    } finally {
      execFileSync('chgrp', ['0', socket]);
      chmodSync(socket, 0o600);
    }
    const run = await applyTo(fleet, node, gen2, ['--runtime-socket', socket]);
    expect(run.summary).toMatchObject({ action: 'applied', via: 'runtime-api' });
  });
});
