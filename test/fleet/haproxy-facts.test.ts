import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLocalFleet, type FleetNode, type LocalFleet } from '../../src/local/fleet.js';
import { handshake, TLS_VERSIONS } from '../../src/tls/probe.js';
import { haproxyRuntime, resumes } from '../support/helpers.js';

/**
 * DESIGN.md's measured facts about HAProxy 2.6, proven again on real HAProxy: the key order
 * (previous, current, next: the penultimate of the last three keys encrypts), three key
 * slots, and the runtime API that rotates without a reload but is lost on reload.
 */
describe('HAProxy ticket key facts', () => {
  let fleet: LocalFleet;
  const keys = Array.from({ length: 6 }, () => randomBytes(80));
  const name = (key: Buffer): string => key.subarray(0, 16).toString('hex');
  const base64 = (key: Buffer): string => key.toString('base64');

  beforeAll(async () => {
    fleet = await startLocalFleet({ nodeCount: 2, flavor: 'haproxy' });
  });
  afterAll(async () => {
    await fleet?.stop();
  });

  const load = async (node: FleetNode, fileKeys: Buffer[]): Promise<void> => {
    writeFileSync(node.includeFile, fileKeys.map((key) => `${base64(key)}\n`).join(''), { mode: 0o600 });
    const before = fleet.workerPids(node);
    execFileSync('bash', ['-c', node.reloadCommand]);
    await fleet.waitForReload(node, before);
  };
  const encryptsWith = async (node: FleetNode): Promise<string[]> =>
    Promise.all(TLS_VERSIONS.map(async (version) => (await handshake(node, { version })).ticketKeyName as string));

  it('encrypts with the penultimate of its keys [previous, current, next], in TLS 1.2 and 1.3, and peers resume', async () => {
    const [a, b] = fleet.nodes as [FleetNode, FleetNode];
    await load(a, keys.slice(0, 3));
    await load(b, keys.slice(0, 3));
    expect(await encryptsWith(a)).toEqual([name(keys[1]!), name(keys[1]!)]);
    for (const version of TLS_VERSIONS) {
      const ticket = await handshake(a, { version });
      expect(await resumes(b, ticket.session as Buffer, version)).toBe(true);
    }
  });

  it('holds three keys: of four in the file, the first is ignored and the third encrypts', async () => {
    const [a, b] = fleet.nodes as [FleetNode, FleetNode];
    await load(b, keys.slice(0, 3));
    const oldTicket = await handshake(b, { version: 'TLSv1.2' });
    expect(oldTicket.ticketKeyName).toBe(name(keys[1]!));
    await load(a, keys.slice(0, 4));
    expect(await encryptsWith(a)).toEqual([name(keys[2]!), name(keys[2]!)]);
    // keys[1] is still among a's last three; keys[0] is not.
    expect(await resumes(a, oldTicket.session as Buffer, 'TLSv1.2')).toBe(true);
    await load(b, [keys[5]!, keys[0]!, keys[4]!]);
    const ticketUnderKey0 = await handshake(b, { version: 'TLSv1.2' });
    expect(ticketUnderKey0.ticketKeyName).toBe(name(keys[0]!));
    expect(await resumes(a, ticketUnderKey0.session as Buffer, 'TLSv1.2')).toBe(false);
  });

  it('rotates through the runtime API without a reload: set ssl tls-key appends a key and drops the oldest; a reload reverts to the file', async () => {
    const [a, b] = fleet.nodes as [FleetNode, FleetNode];
    await load(a, keys.slice(0, 3));
    await load(b, keys.slice(0, 3));
    const peerTicket = await handshake(b, { version: 'TLSv1.3' });
    const workers = fleet.workerPids(a);
    const reply = await haproxyRuntime(a.runtimeSocket!, `set ssl tls-key ${a.includeFile} ${base64(keys[3]!)}`);
    expect(reply).toMatch(/TLS ticket key updated/);
    expect(fleet.workerPids(a)).toEqual(workers);
    // The old next (keys[2]) now encrypts; keys[0] was dropped.
    expect(await encryptsWith(a)).toEqual([name(keys[2]!), name(keys[2]!)]);
    expect(await resumes(a, peerTicket.session as Buffer, 'TLSv1.3')).toBe(true);
    const ticket = await handshake(a, { version: 'TLSv1.3' });
    expect(await resumes(b, ticket.session as Buffer, 'TLSv1.3')).toBe(true);
    const listing = await haproxyRuntime(a.runtimeSocket!, `show tls-keys ${a.includeFile}`);
    // The listing holds key material: assert on it without letting a failure print it.
    expect(listing.includes(base64(keys[3]!)), 'the new key is running').toBe(true);
    expect(listing.includes(base64(keys[0]!)), 'the oldest key was dropped').toBe(false);
    await load(a, keys.slice(0, 3));
    expect(await encryptsWith(a)).toEqual([name(keys[1]!), name(keys[1]!)]);
  });
});
