import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { describe, expect, it } from 'vitest';
import { currentKey, type KeySet } from '../../src/core/keyset.js';
import type { FleetNode } from '../../src/local/fleet.js';
import { TLS_VERSIONS } from '../../src/tls/probe.js';
import { captureTickets, formatReport, verifyFleet } from '../../src/verify/verifier.js';
import { applierFleet, freshTicket, lineage } from '../support/helpers.js';

// Apache's mod_ssl holds one ticket key (SSLSessionTicketKeyFile, 48 bytes): what that means on
// real Apache from Debian, behind the same applier as nginx and HAProxy.
describe("the node applier's apache flavor on real Apache nodes (config test and graceful restart)", () => {
  const sets = lineage(3, 1, 48);
  const [gen1, gen2, gen3] = sets as [KeySet, KeySet, KeySet];
  const { fleet, apply, targets, outputs, expectMalformedRefused } = applierFleet('apache', sets);

  it('before any set, each node encrypts with keys of its own: tickets do not resume across nodes', async () => {
    const report = await verifyFleet(targets());
    outputs.push(JSON.stringify(report));
    expect(new Set(report.nodes.map((node) => node.keys['TLSv1.3'])).size).toBe(3);
    expect(report.nodes.map((node) => node.serverSoftware)).toEqual(['apache', 'apache', 'apache']);
    expect(report.pairs).toEqual({ tried: 12, resumed: 0 });
  });

  it('writes the current key alone (0600) and an include naming it; every node encrypts with it and resumes every other\'s tickets', async () => {
    for (const node of fleet().nodes) {
      const run = await apply(node, gen1);
      expect(run.exitCode, run.stderr).toBe(0);
      expect(run.summary).toMatchObject({ action: 'applied', flavor: 'apache', generation: 1, via: 'reload' });
    }
    const node = fleet().nodes[0]!;
    const include = readFileSync(node.includeFile, 'utf8').split('\n');
    const keyFile = include[1]!.replace(/^SSLSessionTicketKeyFile /, '');
    expect(keyFile).toMatch(new RegExp(`/00-${currentKey(gen1).name}\\.key$`));
    expect(readdirSync(dirname(keyFile))).toEqual([`00-${currentKey(gen1).name}.key`]);
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    expect(readFileSync(keyFile).equals(Buffer.from(currentKey(gen1).material, 'base64'))).toBe(true);
    const report = await verifyFleet(targets(), { expectedKey: currentKey(gen1).name });
    outputs.push(JSON.stringify(report));
    expect(report.failures).toEqual([]);
    expect(report.pairs).toEqual({ tried: 12, resumed: 12 });
  });

  it('a rotation costs every client one full handshake: no ticket from before resumes after it, on any node; the verifier expects that', async () => {
    const before = await captureTickets(targets());
    expect(before).toHaveLength(6);
    for (const node of fleet().nodes) {
      const workers = fleet().workerPids(node);
      expect((await apply(node, gen2)).summary).toMatchObject({ action: 'applied', generation: 2, via: 'reload' });
      expect(fleet().workerPids(node).some((pid) => workers.includes(pid))).toBe(false);
    }
    const expectingContinuity = await verifyFleet(targets(), { expectedKey: currentKey(gen2).name, ticketsBefore: before });
    outputs.push(JSON.stringify(expectingContinuity));
    expect(expectingContinuity.continuity).toEqual({ tried: 18, resumed: 0 });
    expect(expectingContinuity.pairs).toEqual({ tried: 12, resumed: 12 });
    const expectingTheCost = await verifyFleet(targets(), { expectedKey: currentKey(gen2).name, retiredTickets: before });
    outputs.push(formatReport(expectingTheCost));
    expect(expectingTheCost.failures).toEqual([]);
    expect(expectingTheCost.retired).toEqual({ tried: 18, fellBack: 18 });
    expect(formatReport(expectingTheCost)).toContain('tickets from before the rotation: 18/18 fell back to a full handshake (the server holds one key: the cost of each rotation)');
  });

  it('a node still on the key before resumes its own old tickets: the verifier names it', async () => {
    const node = fleet().nodes[2]!;
    await apply(node, gen1, ['--allow-downgrade']);
    const before = await captureTickets([targets()[2]!]);
    await apply(fleet().nodes[0]!, gen3);
    await apply(fleet().nodes[1]!, gen3);
    const report = await verifyFleet(targets(), { expectedKey: currentKey(gen3).name, retiredTickets: before });
    outputs.push(JSON.stringify(report));
    expect(report.failures.filter((failure) => failure.kind === 'retired key accepted').map((failure) => failure.subject)).toEqual([
      `${node.name} -> ${node.name}`,
      `${node.name} -> ${node.name}`,
    ]);
    expect(report.failures.some((failure) => failure.kind === 'wrong key' && failure.subject === node.name)).toBe(true);
    await apply(node, gen3);
  });

  it('nodes on two acceptable keys (mid-rotation, or one left behind) are the cost, not a fault: their pairs are not tried, the others must resume', async () => {
    const [first, second, third] = fleet().nodes as [FleetNode, FleetNode, FleetNode];
    await apply(first, gen2, ['--allow-downgrade']);
    await apply(second, gen3);
    await apply(third, gen3);
    const lagging = { nodes: [first.name], key: currentKey(gen2).name };
    const report = await verifyFleet(targets(), { expectedKey: currentKey(gen3).name, lagging });
    outputs.push(formatReport(report));
    expect(report.failures).toEqual([]);
    expect(report.pairsAcrossKeys).toBe(8);
    expect(report.pairs).toEqual({ tried: 4, resumed: 4 });
    expect(formatReport(report)).toContain("pairs across keys not tried: 8 (the server holds one key: nodes on different keys cannot resume each other's tickets)");
    // Tickets from before the rotation fall back everywhere but on the node left behind, which still holds their key.
    const before = await captureTickets([targets()[0]!], { versions: ['TLSv1.3'] });
    const withRetired = await verifyFleet(targets(), { expectedKey: currentKey(gen3).name, lagging, retiredTickets: before });
    outputs.push(JSON.stringify(withRetired));
    expect(withRetired.failures).toEqual([]);
    expect(withRetired.retired).toEqual({ tried: 2, fellBack: 2 });
    // A key that is not acceptable is a fault, and so are its pairs.
    const strict = await verifyFleet(targets(), { expectedKey: currentKey(gen3).name });
    outputs.push(JSON.stringify(strict));
    expect(strict.pairsAcrossKeys).toBe(0);
    expect(new Set(strict.failures.map((failure) => failure.kind))).toEqual(new Set(['wrong key', 'not resumed']));
    await apply(first, gen3);
  });

  it('does nothing when the generation is active: no reload', async () => {
    const node = fleet().nodes[1]!;
    const workers = fleet().workerPids(node);
    const run = await apply(node, gen3);
    expect(run.summary.action).toBe('unchanged');
    expect(fleet().workerPids(node)).toEqual(workers);
  });

  it('refuses 80-byte keys, saying what to change, touching nothing', async () => {
    const node = fleet().nodes[0]!;
    const include = readFileSync(node.includeFile, 'utf8');
    const run = await apply(node, lineage(4)[3]!);
    expect(run.exitCode).toBe(3);
    expect(run.summary.error).toBe("key set holds 80-byte keys but Apache reads 48-byte ticket keys (SSLSessionTicketKeyFile): make the fleet's set with 48-byte keys");
    expect(readFileSync(node.includeFile, 'utf8')).toBe(include);
  });

  it('refuses every malformed key set the other flavors refuse, leaving the include and the running key', async () => {
    const node = fleet().nodes[0]!;
    const include = readFileSync(node.includeFile, 'utf8');
    const workers = fleet().workerPids(node);
    // Built on an 80-byte set, as for the other flavors: each is refused for what is malformed, before the key length.
    await expectMalformedRefused(node, lineage(4)[3]!);
    expect(readFileSync(node.includeFile, 'utf8')).toBe(include);
    expect(fleet().workerPids(node)).toEqual(workers);
    for (const version of TLS_VERSIONS) expect((await freshTicket(node, version)).keyName).toBe(currentKey(gen3).name);
  });

  it("a node with tickets off is named, with what turns them on in Apache", async () => {
    const node = fleet().nodes[1]!;
    const config = readFileSync(node.configFile, 'utf8');
    const reload = async (): Promise<void> => {
      const before = fleet().workerPids(node);
      expect(spawnSync('/bin/sh', ['-c', node.reloadCommand]).status).toBe(0);
      await fleet().waitForReload(node, before);
    };
    writeFileSync(node.configFile, config.replace('SSLSessionTickets on', 'SSLSessionTickets off'));
    try {
      await reload();
      const report = await verifyFleet(targets(), { expectedKey: currentKey(gen3).name, versions: ['TLSv1.2'] });
      outputs.push(JSON.stringify(report));
      expect(report.failures.filter((failure) => failure.kind === 'no ticket')).toEqual([
        { kind: 'no ticket', subject: node.name, version: 'TLSv1.2', detail: `${node.name} issued no session ticket over TLSv1.2: turn session tickets on (\`SSLSessionTickets on\` (the default) in its TLS virtual hosts)` },
      ]);
    } finally {
      writeFileSync(node.configFile, config);
      await reload();
    }
  });
});
