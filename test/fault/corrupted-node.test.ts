// Fault matrix: a node's key directory damaged on disk in every way we could think of. The
// running server keeps the keys it loaded, so clients notice nothing; --status names the damage;
// applying the current set again, as the association does, heals it.
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { currentKey, type KeySet } from '../../src/core/keyset.js';
import { nodeApplierArgs, runApplier } from '../../src/local/applier.js';
import { startLocalFleet, type FleetNode, type LocalFleet } from '../../src/local/fleet.js';
import { applyTo, freshTicket, lineage, resumes } from '../support/helpers.js';

interface Damage {
  what: string;
  /** Damages the node's key directory, given the active generation's directory and a scratch directory in memory. */
  damage(node: FleetNode, generationDir: string, scratchDir: string): void;
  /** What --status says afterwards: the damage it can see, or "active" for what is not the active set's. */
  status: 'damaged' | 'none' | 'active';
}

const firstKeyFile = (generationDir: string): string => join(generationDir, readdirSync(generationDir).filter((entry) => entry.endsWith('.key')).sort()[0] as string);
const stateFile = (node: FleetNode): string => join(node.keyDir, 'active.json');

const DAMAGES: Damage[] = [
  { what: 'state file truncated', damage: (node) => truncateSync(stateFile(node), 10), status: 'none' },
  { what: 'state file removed', damage: (node) => rmSync(stateFile(node)), status: 'none' },
  { what: 'state file overwritten with random bytes', damage: (node) => writeFileSync(stateFile(node), randomBytes(64)), status: 'none' },
  { what: 'state file emptied', damage: (node) => writeFileSync(stateFile(node), ''), status: 'none' },
  { what: 'state file is a JSON array', damage: (node) => writeFileSync(stateFile(node), '[1,2]'), status: 'none' },
  {
    what: 'state file names a directory that is gone',
    damage: (node) => {
      const state = JSON.parse(readFileSync(stateFile(node), 'utf8')) as { dir: string };
      writeFileSync(stateFile(node), JSON.stringify({ ...state, dir: join(node.keyDir, 'gen-gone') }));
    },
    status: 'damaged',
  },
  { what: 'key file truncated', damage: (_, dir) => truncateSync(firstKeyFile(dir), 10), status: 'damaged' },
  { what: 'key file emptied', damage: (_, dir) => truncateSync(firstKeyFile(dir), 0), status: 'damaged' },
  { what: 'key file overwritten with other bytes', damage: (_, dir) => writeFileSync(firstKeyFile(dir), randomBytes(80)), status: 'damaged' },
  { what: 'key file removed', damage: (_, dir) => rmSync(firstKeyFile(dir)), status: 'damaged' },
  { what: 'key file readable by everyone', damage: (_, dir) => chmodSync(firstKeyFile(dir), 0o644), status: 'damaged' },
  {
    what: 'key file replaced by a symlink to /dev/zero',
    damage: (_, dir) => {
      const path = firstKeyFile(dir);
      rmSync(path);
      symlinkSync('/dev/zero', path);
    },
    status: 'damaged',
  },
  { what: 'generation directory removed', damage: (_, dir) => rmSync(dir, { recursive: true }), status: 'damaged' },
  { what: 'include removed', damage: (node) => rmSync(node.includeFile), status: 'damaged' },
  { what: 'include emptied', damage: (node) => writeFileSync(node.includeFile, ''), status: 'damaged' },
  { what: 'include names files that do not exist', damage: (node) => writeFileSync(node.includeFile, `ssl_session_ticket_key ${node.keyDir}/nothing.key;\n`), status: 'damaged' },
  { what: 'include with a line added by hand', damage: (node) => writeFileSync(node.includeFile, `${readFileSync(node.includeFile, 'utf8')}ssl_session_tickets off;\n`), status: 'damaged' },
  {
    what: 'include replaced by a symlink to another file',
    damage: (node, _, scratchDir) => {
      const elsewhere = join(scratchDir, 'elsewhere.conf');
      writeFileSync(elsewhere, '# not the managed include\n');
      rmSync(node.includeFile);
      symlinkSync(elsewhere, node.includeFile);
    },
    status: 'damaged',
  },
  { what: 'key directory readable by everyone', damage: (node) => chmodSync(node.keyDir, 0o755), status: 'active' },
  { what: 'lock file removed', damage: (node) => rmSync(join(node.keyDir, '.lock')), status: 'active' },
  {
    what: 'a stale staged generation and temp files left behind',
    damage: (node) => {
      mkdirSync(join(node.keyDir, 'gen-99.stale'), { mode: 0o700 });
      writeFileSync(join(node.keyDir, 'gen-99.stale', '00-partial.key'), randomBytes(20), { mode: 0o600 });
      writeFileSync(join(node.keyDir, '.ticket-keys.conf.tmp.partial'), 'ssl_session_ticket_key');
    },
    status: 'active',
  },
  {
    what: 'key directory emptied (a reboot)',
    damage: (node) => {
      for (const entry of readdirSync(node.keyDir)) rmSync(join(node.keyDir, entry), { recursive: true });
    },
    status: 'none',
  },
];

describe('fault matrix: a node with damaged files on disk', () => {
  let fleet: LocalFleet;
  const [set, newer] = lineage(2) as [KeySet, KeySet];

  beforeAll(async () => {
    fleet = await startLocalFleet({ nodeCount: 2 });
  });
  afterAll(async () => {
    await fleet?.stop();
  });

  it(`keeps serving through ${DAMAGES.length} kinds of damage, names them, and heals when the current set is applied again`, async () => {
    const [damaged, peer] = fleet.nodes as [FleetNode, FleetNode];
    const healed: string[] = [];
    for (const node of fleet.nodes) expect((await applyTo(fleet, node, set)).exitCode).toBe(0);
    // One set throughout: each heal must bring the node back to it, ready for the next damage.
    for (const { what, damage, status } of DAMAGES) {
      const generationDir = (JSON.parse(readFileSync(stateFile(damaged), 'utf8')) as { dir: string }).dir;

      damage(damaged, generationDir, fleet.memoryDir);
      const seen = await runApplier([...nodeApplierArgs(damaged), '--status']);
      expect(seen.summary.action, `${what}: --status`).toBe(status);
      // The running server still holds what it loaded: clients notice nothing.
      const ticket = await freshTicket(damaged, 'TLSv1.3');
      expect(ticket.keyName, what).toBe(currentKey(set).name);
      expect(await resumes(peer, ticket.session, 'TLSv1.3'), `${what}: the peer stopped resuming the damaged node's tickets`).toBe(true);

      const heal = await applyTo(fleet, damaged, set);
      expect(heal.exitCode, `${what}: ${heal.summary.error ?? ''}`).toBe(0);
      const after = await runApplier([...nodeApplierArgs(damaged), '--status']);
      expect(after.summary, what).toMatchObject({ action: 'active', generation: set.generation });
      const entries = readdirSync(damaged.keyDir).sort();
      expect(entries.filter((entry) => !entry.startsWith('gen-')), what).toEqual(['.lock', 'active.json', 'ticket-keys.conf']);
      const [activeDir] = entries.filter((entry) => entry.startsWith('gen-'));
      expect(entries.filter((entry) => entry.startsWith('gen-')), what).toHaveLength(1);
      expect(statSync(damaged.keyDir).mode & 0o777, what).toBe(0o700);
      for (const keyFile of readdirSync(join(damaged.keyDir, activeDir as string))) {
        const stat = statSync(join(damaged.keyDir, activeDir as string, keyFile));
        expect(stat.isFile() && (stat.mode & 0o777) === 0o600, `${what}: ${keyFile}`).toBe(true);
      }
      expect(spawnSync('bash', ['-c', damaged.testCommand]).status, `${what}: nginx -t`).toBe(0);
      const fromPeer = await freshTicket(peer, 'TLSv1.2');
      expect(await resumes(damaged, fromPeer.session, 'TLSv1.2'), `${what}: the healed node does not resume the peer's tickets`).toBe(true);
      healed.push(what);
    }
    expect(healed).toHaveLength(DAMAGES.length);
  }, 240_000);

  it('refuses a state file that claims a newer generation, changing nothing, and says how to go back on purpose', async () => {
    const [damaged] = fleet.nodes as [FleetNode];
    expect((await applyTo(fleet, damaged, newer)).exitCode).toBe(0);
    const state = JSON.parse(readFileSync(stateFile(damaged), 'utf8')) as { generation: number };
    writeFileSync(stateFile(damaged), JSON.stringify({ ...state, generation: state.generation + 5 }));
    const before = readdirSync(damaged.keyDir).sort();
    const refused = await applyTo(fleet, damaged, newer);
    expect(refused.exitCode).toBe(4);
    expect(refused.summary.error).toMatch(/older than the active generation .*nothing changed; pass --allow-downgrade/);
    expect(readdirSync(damaged.keyDir).sort()).toEqual(before);
    expect((await freshTicket(damaged, 'TLSv1.3')).keyName).toBe(currentKey(newer).name);
    const repaired = await applyTo(fleet, damaged, newer, ['--allow-downgrade']);
    expect(repaired.exitCode).toBe(0);
    expect((await runApplier([...nodeApplierArgs(damaged), '--status'])).summary).toMatchObject({ action: 'active', generation: newer.generation });
  });
});
