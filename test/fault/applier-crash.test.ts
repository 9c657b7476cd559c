// Fault matrix: the node applier killed with SIGKILL at each of its steps, then run again.
// Every side effect of an apply is counted: each command it runs goes through a shim (its PATH
// holds nothing else), and the Python program runs under test/fault/applier-crash-harness.py, whose
// audit hook counts each file it writes, renames or removes. At the chosen count the shim or
// the hook kills the applier's whole process group instead, as an instance losing power, SSM's
// timeout or the OOM killer would. Then the applier runs again and must heal.
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { currentKey, serializeKeySet, type KeySet } from '../../src/core/keyset.js';
import { nodeApplierArgs, runApplier } from '../../src/local/applier.js';
import { APPLIER_PATH } from '../../src/project-paths.js';
import { startLocalFleet, type FleetNode, type LocalFleet } from '../../src/local/fleet.js';
import { PROJECT_ROOT } from '../../src/project-root.js';
import { applyTo, freshTicket, lineage, resumes } from '../support/helpers.js';

const SYSTEM_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Every command the applier runs on the path of an apply. Its PATH holds the shims only, so a command missing here fails the test. */
const SHIMMED = ['python3', 'bash'];
const HARNESS = join(PROJECT_ROOT, 'test', 'fault', 'applier-crash-harness.py');

const SHIM = `#!/bin/bash
set -euo pipefail
read -r calls <"$CRASH_COUNTER"
calls=$((calls + 1))
printf '%s\\n' "$calls" >"$CRASH_COUNTER"
if [ "$calls" -eq "$CRASH_AT" ]; then
  read -r -a stat </proc/$$/stat
  kill -KILL -- "-\${stat[4]}"
fi
if [ "\${0##*/}" = python3 ]; then PATH=$CRASH_REAL_PATH exec python3 "$CRASH_HARNESS" "$@"; fi
PATH=$CRASH_REAL_PATH exec "\${0##*/}" "$@"
`;

interface CrashRun {
  signal: NodeJS.Signals | null;
  exitCode: number | null;
  calls: number;
}

function makeShims(): string {
  const dir = mkdtempSync(join(tmpdir(), 'ticket-crash-shims-'));
  const shim = join(dir, 'crash-shim');
  writeFileSync(shim, SHIM);
  chmodSync(shim, 0o755);
  for (const command of SHIMMED) symlinkSync(shim, join(dir, command));
  return dir;
}

/** The applier with every command counted; killed (with its process group) at command number `crashAt`, or never at 0. */
function runWithCrash(shims: string, args: string[], input: string, crashAt: number): Promise<CrashRun> {
  const counter = join(shims, 'calls');
  writeFileSync(counter, '0\n');
  return new Promise((resolve, reject) => {
    // By absolute path: the shims must see the applier's commands, not the applier itself.
    const child = spawn('/bin/bash', [APPLIER_PATH, ...args], {
      detached: true,
      stdio: ['pipe', 'ignore', 'ignore'],
      env: { ...process.env, PATH: shims, CRASH_AT: String(crashAt), CRASH_COUNTER: counter, CRASH_REAL_PATH: SYSTEM_PATH, CRASH_HARNESS: HARNESS },
    });
    child.once('error', reject);
    child.once('close', (exitCode, signal) => {
      const calls = Number(readFileSync(counter, 'utf8').trim());
      resolve({ signal, exitCode, calls });
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(input);
  });
}

/** Waits until a reload the killed run may have started is over: one worker, the old one gone. */
async function settled(fleet: LocalFleet, node: FleetNode): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (fleet.workerPids(node).length !== 1) {
    if (Date.now() > deadline) throw new Error(`${node.name} still has workers ${fleet.workerPids(node).join(',')} after 10 s`);
    await sleep(20);
  }
}

async function resumeEachOther(a: FleetNode, b: FleetNode): Promise<boolean> {
  const fromA = await freshTicket(a, 'TLSv1.3');
  const fromB = await freshTicket(b, 'TLSv1.2');
  return (await resumes(b, fromA.session, 'TLSv1.3')) && (await resumes(a, fromB.session, 'TLSv1.2'));
}

describe('fault matrix: the applier killed at each step', () => {
  let fleet: LocalFleet;
  let shims: string;
  // One generation per crash point, and a few spare.
  const sets = lineage(64);

  beforeAll(async () => {
    fleet = await startLocalFleet({ nodeCount: 2 });
    shims = makeShims();
  });
  afterAll(async () => {
    await fleet?.stop();
    if (shims) rmSync(shims, { recursive: true, force: true });
  });

  it('heals on the next run wherever SIGKILL struck; the running keys stay compatible in between', async () => {
    const [crashed, peer] = fleet.nodes as [FleetNode, FleetNode];
    for (const node of fleet.nodes) expect((await applyTo(fleet, node, sets[0] as KeySet)).exitCode).toBe(0);

    // A run with no crash counts the commands of one apply: the steps to strike.
    expect((await applyTo(fleet, peer, sets[1] as KeySet)).exitCode).toBe(0);
    const dryRun = await runWithCrash(shims, nodeApplierArgs(crashed), serializeKeySet(sets[1] as KeySet), 0);
    expect(dryRun.exitCode).toBe(0);
    await settled(fleet, crashed);
    const steps = dryRun.calls;
    expect(steps, 'the shims and the harness saw too few side effects to strike at each').toBeGreaterThanOrEqual(10);
    expect(steps).toBeLessThan(sets.length - 2);

    const outcomes: string[] = [];
    for (let step = 1; step <= steps; step++) {
      const to = sets[step + 1] as KeySet;
      // The peer goes first, as in a rollout; the crashed node then has a generation to catch up.
      expect((await applyTo(fleet, peer, to)).exitCode).toBe(0);
      const crash = await runWithCrash(shims, nodeApplierArgs(crashed), serializeKeySet(to), step);
      expect(crash.signal, `step ${step}: the applier was not killed`).toBe('SIGKILL');
      await settled(fleet, crashed);

      // In between: the config on disk still loads, and the two nodes resume each other's tickets.
      expect(spawnSync('bash', ['-c', crashed.testCommand]).status, `step ${step}: nginx -t fails after the crash`).toBe(0);
      expect(await resumeEachOther(crashed, peer), `step ${step}: tickets stopped resuming after the crash`).toBe(true);

      const rerun = await applyTo(fleet, crashed, to);
      expect(rerun.exitCode, `step ${step}: ${rerun.summary.error ?? ''}`).toBe(0);
      outcomes.push(rerun.summary.action);
      const status = await runApplier([...nodeApplierArgs(crashed), '--status']);
      expect(status.summary).toMatchObject({ action: 'active', generation: to.generation });
      // Nothing left behind: the active generation's directory, its include, the state and the lock.
      const entries = readdirSync(crashed.keyDir).sort();
      expect(entries.filter((entry) => entry.startsWith('gen-')), `step ${step}: ${entries.join(' ')}`).toHaveLength(1);
      expect(entries.filter((entry) => !entry.startsWith('gen-')), `step ${step}`).toEqual(['.lock', 'active.json', 'ticket-keys.conf']);
      expect((await freshTicket(crashed, 'TLSv1.3')).keyName).toBe(currentKey(to).name);
      expect(await resumeEachOther(crashed, peer), `step ${step}: tickets do not resume after the rerun`).toBe(true);
    }
    // Early crashes leave work to do; late ones (after the state file) leave the set applied.
    expect(outcomes).toContain('applied');
    console.log(`applier crash points: ${steps} struck, ${steps} healed (${outcomes.filter((o) => o === 'applied').length} reapplied, ${outcomes.filter((o) => o === 'unchanged').length} already applied)`);
  }, 300_000);
});
