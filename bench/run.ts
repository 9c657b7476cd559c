// npm run bench [-- NAME [options]]: runs one benchmark by name, or every one in turn.
import { applierCostBenchmark } from './applier-cost.js';
import { bundlesBenchmark } from './bundles.js';
import { continuityBenchmark } from './continuity.js';
import { fleetScaleBenchmark } from './fleet-scale.js';
import { handshakeCostBenchmark } from './handshake-cost.js';
import { scaleBenchmark } from './scale.js';
import { verifierScaleBenchmark } from './verifier-scale.js';

const BENCHMARKS: Record<string, (argv: string[]) => Promise<void>> = {
  continuity: continuityBenchmark,
  scale: scaleBenchmark,
  'handshake-cost': handshakeCostBenchmark,
  'verifier-scale': verifierScaleBenchmark,
  'fleet-scale': fleetScaleBenchmark,
  bundles: bundlesBenchmark,
  'applier-cost': applierCostBenchmark,
};

const [name, ...rest] = process.argv.slice(2);
if (name === undefined) {
  for (const run of Object.values(BENCHMARKS)) await run([]);
} else {
  const run = BENCHMARKS[name];
  if (run === undefined) {
    console.error(`unknown benchmark "${name}": choose one of ${Object.keys(BENCHMARKS).join(', ')}, or none to run them all`);
    process.exit(2);
  }
  await run(rest);
}
