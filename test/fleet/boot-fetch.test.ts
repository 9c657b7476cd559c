// The boot-time fetch on real nginx and HAProxy: before a node's server starts, the same
// script the systemd drop-in runs on AWS fetches the store's current key set and applies it
// with no reload. A node that rebooted or was stopped through rotations serves the fleet's keys
// from its first connection; when the store cannot be reached it starts anyway after a bounded
// wait, on what it has, says so, and the association converges it.
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { currentKey, parseKeySet, type KeySet } from '../../src/core/keyset.js';
import { DEFAULT_ROTATION_INTERVAL_SECONDS, DEFAULT_TICKET_LIFETIME_SECONDS, defaultKeyLength } from '../../src/core/policy.js';
import { FLAVORS, SERVER_FLAVORS, type ServerFlavor } from '../../src/flavors/index.js';
import { rotateNow, type RotationContext } from '../../src/core/rotation.js';
import { AWSCURRENT } from '../../src/core/secret-store.js';
import { runApplier, nodeApplierArgs } from '../../src/local/applier.js';
import { startLocalFleet, type FleetNode, type LocalFleet } from '../../src/local/fleet.js';
import { LocalFleetCommander } from '../../src/local/local-fleet-commander.js';
import { LocalFleetVerifier } from '../../src/local/local-fleet-verifier.js';
import { difference, ResumptionClient, sumStats, type ResumptionStats } from '../../src/local/resumption-client.js';
import { TLS_VERSIONS } from '../../src/tls/probe.js';
import { verifyFleet } from '../../src/verify/verifier.js';
import { freshTicket, resumes, startWithoutStore } from '../support/helpers.js';

const FETCH_WAIT_SECONDS = 2;

/** Clients through the load balancer for a while, each offering the newest session it holds. */
async function throughTheBalancer(fleet: LocalFleet, durationMs: number): Promise<ResumptionStats> {
  const clients = TLS_VERSIONS.map((version) => new ResumptionClient(fleet.balancer, version, 5));
  for (const client of clients) client.start();
  await sleep(durationMs);
  return sumStats(await Promise.all(clients.map((client) => client.stop())));
}

describe.each<ServerFlavor>(SERVER_FLAVORS)('the boot-time fetch on real %s', (flavor) => {
  let fleet: LocalFleet;
  let commander: LocalFleetCommander;
  let context: RotationContext;

  const current = async (): Promise<KeySet> => parseKeySet((await fleet.store.getVersion({ stage: AWSCURRENT }))!.value);
  const rotate = async (): Promise<KeySet> => (await rotateNow(context, randomUUID())).keySet;

  beforeAll(async () => {
    fleet = await startLocalFleet({ nodeCount: 3, flavor, fetchWaitSeconds: FETCH_WAIT_SECONDS });
    commander = new LocalFleetCommander(fleet, fleet.store);
    context = {
      store: fleet.store,
      commander,
      verifier: new LocalFleetVerifier(() => fleet.runningNodes()),
      policy: { rotationIntervalSeconds: DEFAULT_ROTATION_INTERVAL_SECONDS, ticketLifetimeSeconds: DEFAULT_TICKET_LIFETIME_SECONDS, keyLength: defaultKeyLength(flavor), flavor },
    };
    await rotate();
  });
  afterAll(async () => {
    await fleet?.stop();
  });

  it('a node stopped through two rotations and rebooted starts on the current set: its first connection resumes a peer\'s ticket, and clients reconnecting through the load balancer all along make no full handshake after its start', async () => {
    const [node, peer] = fleet.nodes as [FleetNode, FleetNode];
    const clients = TLS_VERSIONS.map((version) => new ResumptionClient(fleet.balancer, version, 5));
    for (const client of clients) client.start();
    await fleet.stopNode(node);
    await rotate();
    const set = await rotate();
    rmSync(node.keyDir, { recursive: true, force: true });
    const peerTicket = await freshTicket(peer, 'TLSv1.2');
    expect(peerTicket.keyName).toBe(currentKey(set).name);

    const summary = await fleet.startNode(node);
    expect(summary).toMatchObject({ action: 'prepared', keySource: 'store', generation: set.generation });
    expect(summary.fetchError).toBeUndefined();
    expect(await resumes(node, peerTicket.session, 'TLSv1.2'), 'its first connection').toBe(true);
    const atStart = clients.map((client) => client.snapshot());
    await sleep(1_500);
    const afterStart = sumStats((await Promise.all(clients.map((client) => client.stop()))).map((stats, index) => difference(stats, atStart[index]!)));
    expect(afterStart.attempts).toBeGreaterThan(3 * fleet.nodes.length);
    expect(afterStart.notResumed).toBe(0);
    const report = await verifyFleet(fleet.runningNodes(), { expectedKey: currentKey(set).name });
    expect(report.failures).toEqual([]);
    // With no association run, the gate lets the next rotation through.
    expect((await rotate()).generation).toBe(set.generation + 1);
  });

  it('when the store cannot be reached, a rebooted node starts after the bounded wait on keys of its own, says so, and the association converges it', async () => {
    const node = fleet.nodes[1] as FleetNode;
    const set = await current();
    await fleet.stopNode(node);
    rmSync(node.keyDir, { recursive: true, force: true });
    const { summary, elapsedMs } = await startWithoutStore(fleet, node);
    expect(summary).toMatchObject({ action: 'prepared', keySource: 'own' });
    expect(summary.fetchError).toMatch(new RegExp(`could not get the current key set \\(cannot reach the key store at ${fleet.storeDir}; exit 255, after waiting up to ${FETCH_WAIT_SECONDS} s\\)`));
    expect(elapsedMs).toBeGreaterThanOrEqual(FETCH_WAIT_SECONDS * 1000 - 200);
    expect(elapsedMs).toBeLessThan((FETCH_WAIT_SECONDS + 8) * 1000);
    expect((await freshTicket(node, 'TLSv1.3')).keyName).not.toBe(currentKey(set).name);
    // Why the fetch matters: clients through the load balancer lose resumption on that node.
    expect((await throughTheBalancer(fleet, 1_000)).notResumed).toBeGreaterThan(0);

    expect(await commander.applyCurrent(node)).toMatchObject({ ok: true, generation: set.generation });
    expect((await verifyFleet(fleet.runningNodes(), { expectedKey: currentKey(set).name })).failures).toEqual([]);
  });

  it('when the store cannot be reached, a restarted node (its key directory kept) starts on the set it had, and says which', async () => {
    const node = fleet.nodes[2] as FleetNode;
    const set = await current();
    await fleet.stopNode(node);
    const { summary } = await startWithoutStore(fleet, node);
    expect(summary).toMatchObject({ action: 'prepared', keySource: 'kept', generation: set.generation });
    expect((await freshTicket(node, 'TLSv1.2')).keyName).toBe(currentKey(set).name);
  });

  it('a store that answers with an error (no current version) is not waited for', async () => {
    const node = fleet.nodes[0] as FleetNode;
    const empty = await startLocalFleet({ nodeCount: 1, flavor, fetchWaitSeconds: 30 });
    try {
      const lone = empty.nodes[0] as FleetNode;
      await empty.stopNode(lone);
      const started = Date.now();
      const summary = await empty.startNode(lone);
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(summary).toMatchObject({ keySource: 'own' });
      expect(summary.fetchError).toMatch(/has no AWSCURRENT version yet: run a rotation first; exit 254\)$/);
    } finally {
      await empty.stop();
    }
    if (FLAVORS[flavor].hasRuntimeApi) {
      // The applier's --before-start runs before the runtime API listens: asking for both is a usage error.
      const refused = await runApplier([...nodeApplierArgs(node), '--runtime-socket', node.runtimeSocket!, '--before-start'], '');
      expect(refused.exitCode).toBe(2);
      expect(refused.summary.error).toBe('--before-start runs before the server listens on its runtime API: drop --runtime-socket');
    }
  });
});
