// Fault matrix, the attacker's column: what a non-root user on a node, or a server command the
// applier runs, can do to the key set. Each case is a reproduction from the security review;
// the applier, --status, onboarding and the CLI refuse or heal, and nothing is written outside
// the key directory.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KeySet } from '../src/core/keyset.js';
import { startLocalFleet, type FleetNode, type LocalFleet } from '../src/local/fleet.js';
import { applyTo, lineage } from './helpers.js';

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
