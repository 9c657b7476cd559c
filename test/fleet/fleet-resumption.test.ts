import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { currentKey, type KeySet } from '../../src/core/keyset.js';
import { startLocalFleet, type LocalFleet } from '../../src/local/fleet.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { ResumptionClient } from '../../src/local/resumption-client.js';
import { TLS_VERSIONS } from '../../src/tls/probe.js';
import { applyTo, applyToAll, freshTicket, lineage, resumes } from '../support/helpers.js';

describe('a real 3-node nginx fleet sharing one key set', () => {
  let fleet: LocalFleet;
  let sets: KeySet[];

  beforeAll(async () => {
    fleet = await startLocalFleet({ nodeCount: 3 });
    sets = lineage(4, 2);
  });
  afterAll(async () => {
    await fleet?.stop();
  });

  for (const version of TLS_VERSIONS) {
    it(`on generation 1 every node encrypts with the current key and resumes every other node's ticket (${version})`, async () => {
      await applyToAll(fleet, sets[0] as KeySet, ['--allow-downgrade']);
      for (const issuer of fleet.nodes) {
        const ticket = await freshTicket(issuer, version);
        expect(ticket.keyName).toBe(currentKey(sets[0] as KeySet).name);
        for (const other of fleet.nodes) {
          expect(await resumes(other, ticket.session, version), `${issuer.name} -> ${other.name}`).toBe(true);
        }
      }
    });
  }

  it('with one node a generation ahead, every pair still resumes both ways', async () => {
    await applyToAll(fleet, sets[0] as KeySet, ['--allow-downgrade']);
    const [ahead] = fleet.nodes;
    await applyTo(fleet, ahead!, sets[1] as KeySet);
    for (const version of TLS_VERSIONS) {
      for (const issuer of fleet.nodes) {
        const ticket = await freshTicket(issuer, version);
        const expected = issuer === ahead ? sets[1] : sets[0];
        expect(ticket.keyName).toBe(currentKey(expected as KeySet).name);
        for (const other of fleet.nodes) {
          expect(await resumes(other, ticket.session, version), `${version} ${issuer.name} -> ${other.name}`).toBe(true);
        }
      }
    }
  });

  it('with one node two generations ahead, the others cannot resume its tickets (why the gate exists)', async () => {
    await applyToAll(fleet, sets[0] as KeySet, ['--allow-downgrade']);
    const [ahead, behind] = fleet.nodes;
    await applyTo(fleet, ahead!, sets[2] as KeySet);
    for (const version of TLS_VERSIONS) {
      const aheadTicket = await freshTicket(ahead!, version);
      const behindTicket = await freshTicket(behind!, version);
      // Generation 3 encrypts with a key generation 1 never saw...
      expect(await resumes(behind!, aheadTicket.session, version)).toBe(false);
      // ...while, keeping two previous keys, it still opens generation 1's tickets.
      expect(await resumes(ahead!, behindTicket.session, version)).toBe(true);
    }
  });

  it('a client resuming through the load balancer notices a node with an independent key', async () => {
    await applyToAll(fleet, sets[0] as KeySet, ['--allow-downgrade']);
    const stranger = fleet.nodes[2]!;
    const independent = lineage(2)[1] as KeySet;
    expect((await applyTo(fleet, stranger, independent)).exitCode).toBe(0);
    const client = new ResumptionClient(fleet.balancer, 'TLSv1.3', 0);
    client.start();
    while (client.snapshot().attempts < 30) await sleep(10);
    const stats = await client.stop();
    // Round-robin sends every third connection to the stranger, which opens nobody's tickets
    // and whose tickets nobody opens: about two attempts in three fail.
    expect(stats.notResumed).toBeGreaterThan(stats.attempts / 3);
    expect(stats.resumed + stats.notResumed).toBe(stats.attempts);
  });

  it('a ticket issued under generation g resumes on every node after all moved to g+1', async () => {
    await applyToAll(fleet, sets[2] as KeySet, ['--allow-downgrade']);
    const before = await Promise.all(
      fleet.nodes.flatMap((node) => TLS_VERSIONS.map(async (version) => ({ node, version, ticket: await freshTicket(node, version) }))),
    );
    await applyToAll(fleet, sets[3] as KeySet);
    for (const { node, version, ticket } of before) {
      expect(ticket.keyName).toBe(currentKey(sets[2] as KeySet).name);
      for (const other of fleet.nodes) {
        expect(await resumes(other, ticket.session, version), `${version} ${node.name} -> ${other.name}`).toBe(true);
      }
    }
  });
});
