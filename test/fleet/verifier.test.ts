import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { currentKey, nextKey, type KeySet } from '../../src/core/keyset.js';
import { startLocalFleet, type FleetNode, type LocalFleet } from '../../src/local/fleet.js';
import { serverSoftware } from '../../src/tls/probe.js';
import { captureSources, captureTickets, choosePeers, DEFAULT_CAPTURED_NODES, formatReport, verifyFleet, type VerifyNode } from '../../src/verify/verifier.js';
import { applyTo, applyToAll, expectNoMaterial, lineage } from '../support/helpers.js';

describe('peer sampling', () => {
  it('gives every node k distinct peers, never itself, and makes every node a resumer k times (a circulant): the same for the same seed', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 300 }), fc.integer({ min: 1, max: 12 }), fc.integer(), (size, count, seed) => {
        const names = Array.from({ length: size }, (_, index) => `node${index}`);
        const peers = choosePeers(names, count, seed);
        const k = Math.min(count, size - 1);
        const resumed = new Map(names.map((name) => [name, 0]));
        for (const name of names) {
          const mine = peers.get(name)!;
          expect(new Set(mine).size).toBe(k);
          expect(mine).not.toContain(name);
          for (const peer of mine) resumed.set(peer, resumed.get(peer)! + 1);
        }
        expect(new Set(resumed.values())).toEqual(new Set(size > 1 ? [k] : [0]));
        expect(choosePeers([...names].reverse(), count, seed)).toEqual(peers);
      }),
    );
    const names = Array.from({ length: 200 }, (_, index) => `node${index}`);
    expect(choosePeers(names, 6, 8).get('node0')).not.toEqual(choosePeers(names, 6, 7).get('node0'));
    expect(choosePeers(['node0', 'a', 'b'], 6, 7).get('node0')?.sort()).toEqual(['a', 'b']);
  });

  it('captures tickets from every node of a small fleet, and from a sample per version of a large one, so that continuity stays linear', () => {
    const fleet = (count: number): VerifyNode[] => Array.from({ length: count }, (_, index) => ({ name: `node${index}`, host: '127.0.0.1', port: 1000 + index }));
    expect(captureSources(fleet(DEFAULT_CAPTURED_NODES), 'version-a')).toEqual(fleet(DEFAULT_CAPTURED_NODES));
    const large = fleet(200);
    const sources = captureSources(large, 'version-a');
    expect(new Set(sources.map((node) => node.name)).size).toBe(DEFAULT_CAPTURED_NODES);
    expect(captureSources(large, 'version-a')).toEqual(sources);
    expect(captureSources(large, 'version-b')).not.toEqual(sources);
  });
});

describe('the verifier against a real 3-node fleet', () => {
  let fleet: LocalFleet;
  let targets: VerifyNode[];
  const sets = lineage(4, 1);
  const [, gen2, gen3] = sets as [KeySet, KeySet, KeySet, KeySet];
  const reports: string[] = [];

  beforeAll(async () => {
    fleet = await startLocalFleet({ nodeCount: 3 });
    targets = fleet.nodes.map((node) => ({ name: node.name, host: node.host, port: node.port }));
  });
  afterAll(async () => {
    await fleet?.stop();
    expectNoMaterial(reports.join('\n'), sets);
  });

  const verify = async (expected: KeySet, options: Parameters<typeof verifyFleet>[1] = {}) => {
    const report = await verifyFleet(targets, { expectedKey: currentKey(expected).name, ...options });
    reports.push(JSON.stringify(report), formatReport(report));
    return report;
  };

  it('passes a healthy fleet: every node on the current key, every pair resumes, in TLS 1.2 and 1.3', async () => {
    await applyToAll(fleet, gen2, ['--allow-downgrade']);
    const report = await verify(gen2);
    expect(report.failures).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.pairs).toEqual({ tried: 12, resumed: 12 });
    expect(report.nodes.every((node) => node.onExpectedKey && node.keys['TLSv1.2'] === currentKey(gen2).name)).toBe(true);
    expect(formatReport(report)).toMatch(/cross-node resumption: 12\/12[\s\S]*PASS/);
  });

  it('names a node two generations behind: wrong key, and the pairs with it that do not resume', async () => {
    await applyToAll(fleet, gen3, ['--allow-downgrade']);
    await applyTo(fleet, fleet.nodes[2]!, sets[0] as KeySet, ['--allow-downgrade']);
    const report = await verify(gen3);
    expect(report.ok).toBe(false);
    const subjects = new Set(report.failures.map((failure) => `${failure.kind}: ${failure.subject}`));
    expect(subjects).toEqual(new Set(['wrong key: node3', 'not resumed: node1 -> node3', 'not resumed: node2 -> node3', 'not resumed: node3 -> node1', 'not resumed: node3 -> node2']));
    expect(report.nodes.map((node) => node.onExpectedKey)).toEqual([true, true, false]);
  });

  it('names a node that is down as unreachable, and still checks the rest', async () => {
    await applyToAll(fleet, gen3, ['--allow-downgrade']);
    const down = fleet.nodes[1]!;
    await fleet.stopNode(down);
    try {
      const report = await verify(gen3);
      expect(report.ok).toBe(false);
      expect(report.failures.map((failure) => `${failure.kind}: ${failure.subject}`)).toEqual(['unreachable: node2', 'unreachable: node2']);
      expect(report.failures[0]!.detail).toMatch(/ECONNREFUSED/);
      expect(report.pairs).toEqual({ tried: 4, resumed: 4 });
      // A node the commander skipped (a stopped instance) serves no client: not answering is no failure for it.
      const skipped = await verifyFleet(fleet.nodes, { expectedKey: currentKey(gen3).name, lagging: { nodes: [down.name], key: currentKey(gen2).name } });
      expect(skipped.failures).toEqual([]);
      expect(skipped.nodes.find((node) => node.node === down.name)).toMatchObject({ reachable: false, onExpectedKey: false });
    } finally {
      await fleet.startNode(down);
    }
  });

  it('fails a node whose keys are in the wrong order (a decrypt-only key first) with "wrong key"', async () => {
    await applyToAll(fleet, gen3, ['--allow-downgrade']);
    const node = fleet.nodes[0]!;
    // Written by hand: the applier itself refuses a set whose first key is not current.
    const dir = join(fleet.memoryDir, 'wrong-order');
    mkdirSync(dir, { mode: 0o700 });
    const files = [nextKey(gen3), currentKey(gen3)].map((key, index) => {
      const path = join(dir, `${index}.key`);
      writeFileSync(path, Buffer.from(key.material, 'base64'), { mode: 0o600 });
      return path;
    });
    writeFileSync(node.includeFile, files.map((path) => `ssl_session_ticket_key ${path};\n`).join(''));
    await reload(fleet, node);
    const report = await verify(gen3);
    expect(report.failures.map((failure) => `${failure.kind}: ${failure.subject}`)).toEqual(['wrong key: node1', 'wrong key: node1']);
    expect(report.failures[0]!.detail).toContain(`encrypts TLSv1.2 tickets with key ${nextKey(gen3).name}, expected ${currentKey(gen3).name}`);
  });

  it('says "different certificate" when nodes share the key but present different certificates', async () => {
    await applyToAll(fleet, gen3, ['--allow-downgrade']);
    const node = fleet.nodes[2]!;
    const config = readFileSync(node.configFile, 'utf8');
    const certificate = join(fleet.baseDir, 'other-cert.pem');
    const key = join(fleet.baseDir, 'other-key.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', '/CN=other.local', '-days', '1', '-keyout', key, '-out', certificate], { stdio: 'ignore' });
    writeFileSync(node.configFile, config.replace(/ssl_certificate .*;/, `ssl_certificate ${certificate};`).replace(/ssl_certificate_key .*;/, `ssl_certificate_key ${key};`));
    try {
      await reload(fleet, node);
      const report = await verify(gen3);
      expect(report.nodes.every((entry) => entry.onExpectedKey)).toBe(true);
      const kinds = new Set(report.failures.map((failure) => `${failure.kind}: ${failure.subject}`));
      expect(kinds).toEqual(new Set(['different certificate: node1 -> node3', 'different certificate: node2 -> node3', 'different certificate: node3 -> node1', 'different certificate: node3 -> node2']));
    } finally {
      writeFileSync(node.configFile, config);
      await reload(fleet, node);
    }
  });

  it('fails continuity on a node that lost the previous key: tickets from before the rotation do not resume there', async () => {
    await applyToAll(fleet, gen2, ['--allow-downgrade']);
    const before = await captureTickets(targets);
    expect(before).toHaveLength(6);
    const [first, second, forgetful] = fleet.nodes as [FleetNode, FleetNode, FleetNode];
    await applyTo(fleet, first, gen3);
    await applyTo(fleet, second, gen3);
    await applyTo(fleet, forgetful, { ...gen3, keys: gen3.keys.slice(0, 2) });
    const report = await verify(gen3, { ticketsBefore: before });
    expect(report.pairs).toEqual({ tried: 12, resumed: 12 });
    expect(report.continuity).toEqual({ tried: 18, resumed: 12 });
    expect(new Set(report.failures.map((failure) => `${failure.kind}: ${failure.subject}`))).toEqual(
      new Set(['continuity: node1 -> node3', 'continuity: node2 -> node3', 'continuity: node3 -> node3']),
    );
    const sessions = before.map((ticket) => ticket.session.toString('base64').slice(0, 40));
    for (const session of sessions) expect(reports.join('\n')).not.toContain(session);

    // Above 12 nodes each node is tried with one ticket per TLS version, the captured ones in turn:
    // 30 logical nodes over the 3 real ones, every logical node of the forgetful one caught.
    const logical = Array.from({ length: 30 }, (_, index) => ({ ...targets[index % 3]!, name: `n${index}` }));
    const sampled = await verifyFleet(logical, { expectedKey: currentKey(gen3).name, ticketsBefore: before });
    expect(sampled.continuity).toEqual({ tried: 60, resumed: 40 });
    const caught = new Set(sampled.failures.filter((failure) => failure.kind === 'continuity').map((failure) => failure.subject.split(' -> ')[1]));
    expect(caught).toEqual(new Set(logical.filter((_, index) => index % 3 === 2).map((node) => node.name)));
  });
});

describe('the server software a response shows', () => {
  it.each([
    ['HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nContent-Type: text/plain\r\n\r\nnode1', 'nginx'],
    ['HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-type: text/plain\r\n\r\nnode2', 'haproxy'],
    // HAProxy relaying a backend's response still writes the header names in lower case.
    ['HTTP/1.1 200 OK\r\nserver: nginx/1.22.1\r\ncontent-length: 5\r\n\r\n', 'haproxy'],
    ['HTTP/1.1 200 OK\r\nServer: Apache\r\n\r\n', 'apache'],
    ['HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n', undefined],
    ['', undefined],
  ])('%j -> %s', (head, expected) => {
    expect(serverSoftware(head)).toBe(expected);
  });
});

describe('verifier on a mixed fleet (one nginx node, one HAProxy node, the same keys)', () => {
  let fleet: LocalFleet | undefined;
  const sets = lineage(2);
  const output: string[] = [];
  afterAll(async () => {
    await fleet?.stop();
    expectNoMaterial(output.join('\n'), sets);
  });

  it('says "different server flavor" for each pair, and names the software of each node', async () => {
    fleet = await startLocalFleet({ nodeCount: 2, flavor: ['nginx', 'haproxy'] });
    const gen2 = sets[1] as KeySet;
    await applyToAll(fleet, gen2);
    const report = await verifyFleet(fleet.nodes, { expectedKey: currentKey(gen2).name });
    output.push(JSON.stringify(report), formatReport(report));
    expect(report.nodes.map((node) => [node.node, node.serverSoftware, node.onExpectedKey])).toEqual([
      ['node1', 'nginx', true],
      ['node2', 'haproxy', true],
    ]);
    expect(report.pairs).toEqual({ tried: 4, resumed: 0 });
    expect(report.failures.map((failure) => `${failure.kind}: ${failure.subject} ${failure.version}`)).toEqual([
      'different server flavor: node1 -> node2 TLSv1.2',
      'different server flavor: node1 -> node2 TLSv1.3',
      'different server flavor: node2 -> node1 TLSv1.2',
      'different server flavor: node2 -> node1 TLSv1.3',
    ]);
    expect(report.failures[0]!.detail).toContain('node1 runs nginx and node2 runs haproxy');
    expect(formatReport(report)).toMatch(/node1 +127\.0\.0\.1:\d+ +nginx[\s\S]*node2 +127\.0\.0\.1:\d+ +haproxy/);
  });
});

async function reload(fleet: LocalFleet, node: FleetNode): Promise<void> {
  const before = fleet.workerPids(node);
  execFileSync('bash', ['-c', node.reloadCommand], { stdio: 'ignore' });
  await fleet.waitForReload(node, before);
}
