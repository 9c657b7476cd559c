// Fault matrix, the attacker's column: what a non-root user on a node, or a server command the
// applier runs, can do to the key set. Each case is a reproduction from the security review;
// the applier, --status, onboarding and the CLI refuse or heal, and nothing is written outside
// the key directory.
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KeySet } from '../src/core/keyset.js';
import { makeMemoryDirectory, startLocalFleet, type FleetNode, type LocalFleet } from '../src/local/fleet.js';
import { applyTo, expectNoMaterial, lineage } from './helpers.js';

const NOBODY = 65534;
const CLI = join(import.meta.dirname, '..', 'dist', 'src', 'cli.js');

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
});

describe('the CLI writing a key set into a directory others can write to', () => {
  let shared: string;
  beforeAll(() => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first (npm test does)`);
    shared = makeMemoryDirectory('shared-');
    chmodSync(shared, 0o1777);
  });
  afterAll(() => rmSync(shared, { recursive: true, force: true }));

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
