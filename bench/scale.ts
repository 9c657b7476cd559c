// Scale: how a rotation's cost grows with the fleet. For each size, a fleet of real nginx nodes
// runs R real rotations (rotateNow); each phase is timed: the gate's status round, the ticket
// capture, the applier with reload on every node (all at once, as Run Command's default
// MaxConcurrency of 50 would run up to 50 nodes), the status check and the verifier.
// Run: npm run bench -- scale [--sizes 1,4,16,32] [--rotations 3]
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULT_ROTATION_INTERVAL_SECONDS, DEFAULT_TICKET_LIFETIME_SECONDS } from '../src/core/policy.js';
import { rotateNow, type FleetCommander, type FleetVerifier, type RotationContext } from '../src/core/rotation.js';
import { FileSecretStore } from '../src/local/file-secret-store.js';
import { startLocalFleet } from '../src/local/fleet.js';
import { LocalFleetCommander } from '../src/local/local-fleet-commander.js';
import { LocalFleetVerifier } from '../src/local/local-fleet-verifier.js';
import type { VerificationReport } from '../src/verify/verifier.js';
import { machine, median, table, writeJson } from './common.js';

/** Run Command's default MaxConcurrency: the nodes one rotation drives at once. */
const SSM_DEFAULT_MAX_CONCURRENCY = 50;

type Phase = 'gate status' | 'capture' | 'apply' | 'test status' | 'verify';
const PHASES: Phase[] = ['gate status', 'capture', 'apply', 'test status', 'verify'];

interface SizeResult {
  nodes: number;
  rotations: number;
  /** Median milliseconds per phase over the rotations, and for the whole rotation. */
  medianMs: Record<Phase | 'rotation', number>;
  verifierHandshakes: number;
  ok: boolean;
}

/** Least-squares line through (x, y): the cost of one more node, and how well a line fits. */
function linearFit(points: { x: number; y: number }[]): { perUnit: number; intercept: number; r2: number } {
  const n = points.length;
  const meanX = points.reduce((sum, point) => sum + point.x, 0) / n;
  const meanY = points.reduce((sum, point) => sum + point.y, 0) / n;
  const sxx = points.reduce((sum, point) => sum + (point.x - meanX) ** 2, 0);
  const sxy = points.reduce((sum, point) => sum + (point.x - meanX) * (point.y - meanY), 0);
  const perUnit = sxx === 0 ? 0 : sxy / sxx;
  const intercept = meanY - perUnit * meanX;
  const total = points.reduce((sum, point) => sum + (point.y - meanY) ** 2, 0);
  const residual = points.reduce((sum, point) => sum + (point.y - (intercept + perUnit * point.x)) ** 2, 0);
  return { perUnit, intercept, r2: total === 0 ? 1 : 1 - residual / total };
}

async function timed<T>(samples: Map<Phase, number[]>, phase: Phase, work: () => Promise<T>): Promise<T> {
  const start = performance.now();
  try {
    return await work();
  } finally {
    samples.get(phase)?.push(performance.now() - start);
  }
}

async function measureSize(nodes: number, rotations: number): Promise<SizeResult> {
  if (nodes > SSM_DEFAULT_MAX_CONCURRENCY) throw new Error(`--sizes: ${nodes} nodes is above Run Command's default concurrency of ${SSM_DEFAULT_MAX_CONCURRENCY}; this benchmark runs every node at once`);
  const fleet = await startLocalFleet({ nodeCount: nodes });
  try {
    const store = new FileSecretStore(join(fleet.memoryDir, 'bench-secret'));
    const samples = new Map<Phase, number[]>(PHASES.map((phase) => [phase, []]));
    const localCommander = new LocalFleetCommander(fleet, store);
    const localVerifier = new LocalFleetVerifier(() => fleet.runningNodes());
    let statusRound = 0;
    const commander: FleetCommander = {
      apply: (versionId) => timed(samples, 'apply', () => localCommander.apply(versionId)),
      // rotateNow asks twice per rotation: first for the gate, then to test.
      status: () => timed(samples, statusRound++ % 2 === 0 ? 'gate status' : 'test status', () => localCommander.status()),
    };
    const verifier: FleetVerifier<VerificationReport> = {
      captureBefore: (versionId) => timed(samples, 'capture', () => localVerifier.captureBefore(versionId)),
      verify: (versionId, expectedKey, captured, lagging) => timed(samples, 'verify', () => localVerifier.verify(versionId, expectedKey, captured, lagging)),
      observe: (nodes) => localVerifier.observe(nodes),
    };
    const context: RotationContext<VerificationReport> = {
      store,
      commander,
      verifier,
      policy: { rotationIntervalSeconds: DEFAULT_ROTATION_INTERVAL_SECONDS, ticketLifetimeSeconds: DEFAULT_TICKET_LIFETIME_SECONDS, keyLength: 80, flavor: 'nginx' },
    };
    // The first set: every node's first reload onto managed keys, not a rotation.
    await rotateNow(context, randomUUID());
    for (const phase of PHASES) samples.set(phase, []);
    statusRound = 0;
    const totals: number[] = [];
    let ok = true;
    let verifierHandshakes = 0;
    for (let rotation = 0; rotation < rotations; rotation++) {
      const start = performance.now();
      const outcome = await rotateNow(context, randomUUID());
      totals.push(performance.now() - start);
      const report = outcome.verification;
      ok &&= report?.ok === true && outcome.results.every((result) => result.ok);
      if (report !== undefined) verifierHandshakes = report.nodes.length * 2 + report.pairs.tried + report.continuity.tried;
    }
    const medianMs = Object.fromEntries([...PHASES.map((phase) => [phase, Math.round(median(samples.get(phase) ?? []))]), ['rotation', Math.round(median(totals))]]) as SizeResult['medianMs'];
    return { nodes, rotations, medianMs, verifierHandshakes, ok };
  } finally {
    await fleet.stop();
  }
}

export async function scaleBenchmark(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { sizes: { type: 'string', default: '1,4,16,32' }, rotations: { type: 'string', default: '3' } } });
  const sizes = (values.sizes ?? '').split(',').map(Number);
  const rotations = Number(values.rotations);
  if (sizes.some((size) => !Number.isInteger(size) || size < 1) || !Number.isInteger(rotations) || rotations < 1) {
    throw new Error('--sizes takes positive whole numbers separated by commas (e.g. 1,4,16,32) and --rotations a positive whole number');
  }
  const results: SizeResult[] = [];
  for (const size of sizes) {
    results.push(await measureSize(size, rotations));
    console.error(`scale: ${size} nodes done`);
  }
  const fits = Object.fromEntries(
    (['apply', 'verify', 'rotation'] as const).map((phase) => [phase, linearFit(results.map((result) => ({ x: result.nodes, y: result.medianMs[phase] })))]),
  );
  console.log(`Scale: median of ${rotations} rotations per fleet size, real nginx nodes, all nodes at once`);
  console.log(
    table([
      ['nodes', ...PHASES.map((phase) => `${phase} ms`), 'rotation ms', 'verifier handshakes', 'verdict'],
      ...results.map((result) => [result.nodes, ...PHASES.map((phase) => result.medianMs[phase]), result.medianMs.rotation, result.verifierHandshakes, result.ok ? 'PASS' : 'FAIL']),
    ]),
  );
  for (const [phase, fit] of Object.entries(fits)) {
    console.log(`${phase}: ${fit.perUnit.toFixed(1)} ms per node + ${fit.intercept.toFixed(0)} ms (linear fit R² ${fit.r2.toFixed(3)})`);
  }
  console.log(`wrote ${writeJson('scale.json', { machine: machine(), rotations, results, linearFits: fits })}`);
}
