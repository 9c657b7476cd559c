// How long the verifier takes for large fleets: N logical nodes (names n0..nN-1) spread over
// 3 real local nginx nodes, so every handshake and resumption is real TLS.
// Run: npm run bench -- verifier-scale [--sizes 12,50,200]
import { parseArgs } from 'node:util';
import { createKeySet, currentKey } from '../src/core/keyset.js';
import { startLocalFleet } from '../src/local/fleet.js';
import { verifyFleet } from '../src/verify/verifier.js';
import { applyEverywhere, logicalNodes, machine, table, writeJson } from './common.js';

export async function verifierScaleBenchmark(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { sizes: { type: 'string', default: '12,50,200' } } });
  const sizes = (values.sizes ?? '').split(',').map(Number).filter((size) => size > 1);
  const fleet = await startLocalFleet({ nodeCount: 3 });
  const results: { nodes: number; peersPerNode: number; handshakes: number; resumed: number; tried: number; ms: number; ok: boolean }[] = [];
  try {
    const set = createKeySet();
    await applyEverywhere(fleet, set);
    for (const size of sizes) {
      const targets = logicalNodes(fleet, size);
      const report = await verifyFleet(targets, { expectedKey: currentKey(set).name });
      results.push({
        nodes: size,
        peersPerNode: report.peersPerNode,
        handshakes: size * 2 + report.pairs.tried,
        resumed: report.pairs.resumed,
        tried: report.pairs.tried,
        ms: report.durationMs,
        ok: report.ok,
      });
    }
  } finally {
    await fleet.stop();
  }
  console.log('Verifier scale: logical nodes over 3 real nginx processes');
  console.log(
    table([
      ['nodes', 'peers/node', 'handshakes', 'resumed/tried', 'ms', 'verdict'],
      ...results.map((result) => [result.nodes, result.peersPerNode, result.handshakes, `${result.resumed}/${result.tried}`, result.ms, result.ok ? 'PASS' : 'FAIL']),
    ]),
  );
  console.log(`wrote ${writeJson('verifier-scale.json', { machine: machine(), results })}`);
}
