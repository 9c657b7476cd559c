import { readFileSync, statSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { currentKey, type KeySet } from '../../src/core/keyset.js';
import { TLS_VERSIONS } from '../../src/tls/probe.js';
import { captureTickets, verifyFleet } from '../../src/verify/verifier.js';
import { applierFleet, applyToAll, freshTicket, lineage } from '../support/helpers.js';

describe('the node applier\'s haproxy flavor on real HAProxy nodes (config check and graceful reload)', () => {
  const sets = lineage(3, 1);
  const [gen1, gen2, gen3] = sets as [KeySet, KeySet, KeySet];
  const { fleet, apply, targets, outputs, expectMalformedRefused } = applierFleet('haproxy', sets);

  it('writes the keys file (0600, previous current next, HAProxy\'s layout); every node encrypts with the current key and resumes every other\'s tickets', async () => {
    for (const node of fleet().nodes) {
      const run = await apply(node, gen1, ['--allow-downgrade']);
      expect(run.summary).toMatchObject({ action: 'applied', flavor: 'haproxy', generation: 1 });
    }
    const node = fleet().nodes[0]!;
    expect(statSync(node.includeFile).mode & 0o777).toBe(0o600);
    const lines = readFileSync(node.includeFile, 'utf8').trim().split('\n');
    const names = lines.map((line) => Buffer.from(line, 'base64').subarray(0, 16).toString('hex'));
    // Generation 1 has no previous key: the current key fills the previous slot.
    expect(names).toEqual([gen1.keys[0]!.name, gen1.keys[0]!.name, gen1.keys[1]!.name]);
    const raw = Buffer.from(gen1.keys[0]!.material, 'base64');
    expect(Buffer.from(lines[1]!, 'base64').equals(Buffer.concat([raw.subarray(0, 16), raw.subarray(48), raw.subarray(16, 48)]))).toBe(true);
    const report = await verifyFleet(targets(), { expectedKey: currentKey(gen1).name });
    outputs.push(JSON.stringify(report));
    expect(report.failures).toEqual([]);
    expect(report.pairs).toEqual({ tried: 12, resumed: 12 });
  });

  it('one node a generation ahead still resumes both ways; tickets from before a rotation resume after it', async () => {
    await applyToAll(fleet(), gen1, ['--allow-downgrade']);
    const before = await captureTickets(targets());
    await apply(fleet().nodes[0]!, gen2);
    const mixed = await verifyFleet(targets(), { ticketsBefore: before });
    outputs.push(JSON.stringify(mixed));
    expect(mixed.pairs).toEqual({ tried: 12, resumed: 12 });
    expect(mixed.continuity).toEqual({ tried: 18, resumed: 18 });
    for (const node of fleet().nodes.slice(1)) await apply(node, gen2);
    const after = await verifyFleet(targets(), { expectedKey: currentKey(gen2).name, ticketsBefore: before });
    outputs.push(JSON.stringify(after));
    expect(after.failures).toEqual([]);
    expect(after.continuity).toEqual({ tried: 18, resumed: 18 });
  });

  it('does nothing when the generation is active: no reload', async () => {
    const node = fleet().nodes[1]!;
    await apply(node, gen2, ['--allow-downgrade']);
    const workers = fleet().workerPids(node);
    const run = await apply(node, gen2);
    expect(run.summary.action).toBe('unchanged');
    expect(fleet().workerPids(node)).toEqual(workers);
  });

  it('refuses a key set that needs more keys than HAProxy holds, saying what to change, touching nothing', async () => {
    const node = fleet().nodes[2]!;
    await apply(node, gen2, ['--allow-downgrade']);
    const file = readFileSync(node.includeFile, 'utf8');
    const tooMany = lineage(3, 2)[2] as KeySet;
    expect(tooMany.keys).toHaveLength(4);
    const run = await apply(node, tooMany);
    expect(run.exitCode).toBe(3);
    expect(run.summary.error).toMatch(/keeps 2 previous keys but HAProxy holds 3 keys \(previous, current, next\): rotate less often or shorten the ticket lifetime/);
    expect(readFileSync(node.includeFile, 'utf8')).toBe(file);
  });

  it('refuses every malformed key set the nginx flavor refuses, leaving the file and the running keys', async () => {
    const node = fleet().nodes[0]!;
    await apply(node, gen2, ['--allow-downgrade']);
    const file = readFileSync(node.includeFile, 'utf8');
    const workers = fleet().workerPids(node);
    await expectMalformedRefused(node, gen3);
    expect(readFileSync(node.includeFile, 'utf8')).toBe(file);
    expect(fleet().workerPids(node)).toEqual(workers);
    for (const version of TLS_VERSIONS) expect((await freshTicket(node, version)).keyName).toBe(currentKey(gen2).name);
  });
});
