// How long the verifier takes for large fleets: N logical nodes (names n0..nN-1) spread over
// 3 real local nginx nodes, so every handshake and resumption is real TLS.
// Run: npm run build && node bench/verifier-scale.mjs [N ...]
import { nodeApplierArgs, runApplier } from '../dist/src/local/applier.js';
import { startLocalFleet } from '../dist/src/local/fleet.js';
import { createKeySet, currentKey, serializeKeySet } from '../dist/src/core/keyset.js';
import { verifyFleet } from '../dist/src/verify/verifier.js';

const sizes = process.argv.slice(2).map(Number).filter((n) => n > 1);
const fleet = await startLocalFleet({ nodeCount: 3 });
try {
  const set = createKeySet();
  for (const node of fleet.nodes) {
    const before = fleet.workerPids(node);
    await runApplier(nodeApplierArgs(node), serializeKeySet(set));
    await fleet.waitForReload(node, before);
  }
  console.log('nodes  peers/node  handshakes  resumed/tried  ms');
  for (const size of sizes.length > 0 ? sizes : [12, 50, 200]) {
    const targets = Array.from({ length: size }, (_, index) => {
      const node = fleet.nodes[index % fleet.nodes.length];
      return { name: `n${index}`, host: node.host, port: node.port };
    });
    const report = await verifyFleet(targets, { expectedKey: currentKey(set).name });
    const handshakes = size * 2 + report.pairs.tried;
    console.log(`${String(size).padStart(5)}  ${String(report.peersPerNode).padStart(10)}  ${String(handshakes).padStart(10)}  ${`${report.pairs.resumed}/${report.pairs.tried}`.padStart(13)}  ${report.durationMs}${report.ok ? '' : '  FAILED'}`);
  }
} finally {
  await fleet.stop();
}
