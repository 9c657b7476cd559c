// Continuity: what clients see while ticket keys rotate. On one fleet of real nodes behind the
// TCP round-robin load balancer, the same client workload runs through R rotations for each
// strategy: this project's rotation, the procedure of seed 000, and no synchronisation.
// Run: npm run bench -- continuity [--rotations 3] [--clients 8] [--seed 1]
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { DEFAULT_ROTATION_INTERVAL_SECONDS, DEFAULT_TICKET_LIFETIME_SECONDS, defaultKeyLength } from '../src/core/policy.js';
import { FLAVORS, type ServerFlavor } from '../src/flavors/index.js';
import { rotateNow, type RotationContext } from '../src/core/rotation.js';
import { seededRandom, shuffled } from '../src/core/seeded-random.js';
import { FileSecretStore } from '../src/local/file-secret-store.js';
import { startLocalFleet, type FleetNode, type LocalFleet } from '../src/local/fleet.js';
import { LocalFleetCommander } from '../src/local/local-fleet-commander.js';
import { LocalFleetVerifier } from '../src/local/local-fleet-verifier.js';
import { ResumptionClient, sumStats, type ResumptionStats } from '../src/local/resumption-client.js';
import { PROJECT_ROOT } from '../src/project-root.js';
import { TLS_VERSIONS, type TlsVersion } from '../src/tls/probe.js';
import { renderChart, type Panel } from './chart.js';
import { machine, percent, reloadNode, table, writeJson } from './common.js';

type StrategyId = 'project' | 'seed-000' | 'no-sync';

const STRATEGY_LABELS: Record<StrategyId, string> = {
  project: 'this project',
  'seed-000': 'seed 000: fresh key primary, old secondary',
  'no-sync': 'no synchronisation',
};

interface Strategy {
  id: StrategyId;
  /** Brings every node to the strategy's steady state before the clients start. */
  prepare(): Promise<void>;
  /** One rotation across the fleet. */
  rotate(): Promise<void>;
}

interface Settings {
  rotations: number;
  clients: number;
  /** Each node starts its part of a rotation after a random delay up to this. */
  maxNodeDelayMs: number;
  beforeMs: number;
  betweenRotationsMs: number;
  afterMs: number;
  sampleMs: number;
}

interface Counts {
  attempts: number;
  resumed: number;
  fullHandshakes: number;
  errors: number;
}

interface StrategyResult {
  fleet: string;
  flavor: ServerFlavor;
  nodes: number;
  strategy: StrategyId;
  total: Counts;
  before: Counts;
  during: Counts;
  after: Counts;
  rotationsSeconds: number;
  timeline: { t: number; attempts: number; resumed: number }[];
}

const counts = (from: ResumptionStats, to: ResumptionStats): Counts => ({
  attempts: to.attempts - from.attempts,
  resumed: to.resumed - from.resumed,
  fullHandshakes: to.notResumed - from.notResumed,
  errors: to.errors - from.errors,
});

/** Runs `perNode` on every node at once, each after its own random delay: a random order. */
async function rollOut(fleet: LocalFleet, random: () => number, maxDelayMs: number, perNode: (node: FleetNode) => Promise<void>): Promise<void> {
  const delays = new Map(fleet.nodes.map((node) => [node.name, Math.floor(random() * maxDelayMs)]));
  await Promise.all(
    shuffled(fleet.nodes, random).map(async (node) => {
      await sleep(delays.get(node.name) ?? 0);
      await perNode(node);
    }),
  );
}

function projectStrategy(fleet: LocalFleet, flavor: ServerFlavor, random: () => number, settings: Settings): Strategy {
  const store = new FileSecretStore(join(fleet.memoryDir, 'bench-secret'));
  const context: RotationContext = {
    store,
    commander: new LocalFleetCommander(fleet, store, { maxDelayMs: settings.maxNodeDelayMs, random }),
    verifier: new LocalFleetVerifier(() => fleet.runningNodes()),
    policy: {
      rotationIntervalSeconds: DEFAULT_ROTATION_INTERVAL_SECONDS,
      ticketLifetimeSeconds: DEFAULT_TICKET_LIFETIME_SECONDS,
      keyLength: defaultKeyLength(flavor),
      flavor,
    },
  };
  return {
    id: 'project',
    prepare: async () => void (await rotateNow(context, randomUUID())),
    rotate: async () => void (await rotateNow(context, randomUUID())),
  };
}

/** Writes nginx key files and the include listing them, the first key encrypting. */
function writeNginxKeys(fleet: LocalFleet, node: FleetNode, keys: Buffer[], label: string): void {
  const dir = join(fleet.memoryDir, `${node.name}-bench-${label}`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const lines = keys.map((key, index) => {
    const path = join(dir, `${index}.key`);
    writeFileSync(path, key, { mode: 0o600 });
    return `ssl_session_ticket_key ${path};\n`;
  });
  writeFileSync(node.includeFile, lines.join(''));
}

/**
 * Seed 000's procedure: one shared key per rotation, made primary on each node as it reloads,
 * the old key kept as secondary; nothing is published ahead of use.
 */
function seed000Strategy(fleet: LocalFleet, random: () => number, settings: Settings): Strategy {
  let shared = randomBytes(80);
  let round = 0;
  return {
    id: 'seed-000',
    prepare: async () => {
      for (const node of fleet.nodes) {
        writeNginxKeys(fleet, node, [shared], 'seed-000-0');
        await reloadNode(fleet, node);
      }
    },
    rotate: async () => {
      const fresh = randomBytes(80);
      const old = shared;
      round += 1;
      await rollOut(fleet, random, settings.maxNodeDelayMs, async (node) => {
        writeNginxKeys(fleet, node, [fresh, old], `seed-000-${round}`);
        await reloadNode(fleet, node);
      });
      shared = fresh;
    },
  };
}

/** No synchronisation: every node its own keys, new at each reload (src/flavors: unsharedKeys). */
function noSyncStrategy(fleet: LocalFleet, random: () => number, settings: Settings): Strategy {
  const ownKeys = async (node: FleetNode): Promise<void> => {
    const { text, mode } = FLAVORS[node.flavor].local.unsharedKeys();
    writeFileSync(node.includeFile, text, { mode });
    await reloadNode(fleet, node);
  };
  return {
    id: 'no-sync',
    prepare: async () => {
      for (const node of fleet.nodes) await ownKeys(node);
    },
    rotate: () => rollOut(fleet, random, settings.maxNodeDelayMs, ownKeys),
  };
}

async function runStrategy(fleet: LocalFleet, label: string, flavor: ServerFlavor, strategy: Strategy, settings: Settings): Promise<StrategyResult> {
  await strategy.prepare();
  const clients = Array.from({ length: settings.clients }, (_, index) => new ResumptionClient(fleet.balancer, TLS_VERSIONS[index % TLS_VERSIONS.length] as TlsVersion));
  const snapshot = (): ResumptionStats => sumStats(clients.map((client) => client.snapshot()));
  const samples: { at: number; stats: ResumptionStats }[] = [];
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      samples.push({ at: Date.now(), stats: snapshot() });
      await sleep(settings.sampleMs);
    }
  })();
  try {
    for (const client of clients) client.start();
    // Every client holds a ticket before counting starts.
    await sleep(500);
    const start = snapshot();
    await sleep(settings.beforeMs);
    const rotationsStart = { at: Date.now(), stats: snapshot() };
    for (let rotation = 0; rotation < settings.rotations; rotation += 1) {
      if (rotation > 0) await sleep(settings.betweenRotationsMs);
      await strategy.rotate();
    }
    const rotationsEnd = { at: Date.now(), stats: snapshot() };
    await sleep(settings.afterMs);
    const end = snapshot();
    const timeline = samples.slice(1).map((sample, index) => {
      const delta = counts((samples[index] as (typeof samples)[number]).stats, sample.stats);
      return { t: Number(((sample.at - rotationsStart.at) / 1000).toFixed(2)), attempts: delta.attempts, resumed: delta.resumed };
    });
    return {
      fleet: label,
      flavor,
      nodes: fleet.nodes.length,
      strategy: strategy.id,
      total: counts(start, end),
      before: counts(start, rotationsStart.stats),
      during: counts(rotationsStart.stats, rotationsEnd.stats),
      after: counts(rotationsEnd.stats, end),
      rotationsSeconds: (rotationsEnd.at - rotationsStart.at) / 1000,
      timeline: timeline.filter((point) => point.t >= -settings.beforeMs / 1000),
    };
  } finally {
    sampling = false;
    await sampler;
    await Promise.all(clients.map((client) => client.stop()));
  }
}

/** A shorter bucket (the last one, cut by the end of the run) would plot noise. */
const MIN_ATTEMPTS_PER_POINT = 10;

interface FleetPlan {
  flavor: ServerFlavor;
  nodes: number;
  strategies: StrategyId[];
}

const PLANS: FleetPlan[] = [
  { flavor: 'nginx', nodes: 3, strategies: ['project', 'seed-000', 'no-sync'] },
  { flavor: 'nginx', nodes: 8, strategies: ['project', 'seed-000', 'no-sync'] },
  { flavor: 'haproxy', nodes: 3, strategies: ['project', 'no-sync'] },
  // Apache holds one key: each rotation costs every client a full handshake, by design.
  { flavor: 'apache', nodes: 3, strategies: ['project', 'no-sync'] },
];

export async function continuityBenchmark(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: { rotations: { type: 'string', default: '3' }, clients: { type: 'string', default: '7' }, seed: { type: 'string', default: '1' } },
  });
  // 7 clients by default: a count sharing no factor with 3 or 8 nodes, so that round-robin does
  // not keep sending one client back to the node that issued its ticket.
  const settings: Settings = {
    rotations: Number(values.rotations),
    clients: Number(values.clients),
    maxNodeDelayMs: 600,
    beforeMs: 3000,
    betweenRotationsMs: 1500,
    afterMs: 3000,
    sampleMs: 250,
  };
  const seed = Number(values.seed);
  const random = seededRandom(seed);
  const results: StrategyResult[] = [];
  for (const plan of PLANS) {
    const label = `${plan.nodes} ${plan.flavor} nodes`;
    const fleet = await startLocalFleet({ nodeCount: plan.nodes, flavor: plan.flavor });
    try {
      // This project's rotation runs first, while the nodes' applier state is untouched.
      for (const id of plan.strategies) {
        const strategy =
          id === 'project'
            ? projectStrategy(fleet, plan.flavor, random, settings)
            : id === 'seed-000'
              ? seed000Strategy(fleet, random, settings)
              : noSyncStrategy(fleet, random, settings);
        console.error(`continuity: ${label}, ${STRATEGY_LABELS[id]}...`);
        results.push(await runStrategy(fleet, label, plan.flavor, strategy, settings));
      }
    } finally {
      await fleet.stop();
    }
  }
  const rows: (string | number)[][] = [
    ['fleet', 'strategy', 'attempts', 'resumed', 'full handshakes', 'errors', 'rate before', 'rate during', 'rate after', 'rotating (s)'],
    ...results.map((result) => [
      result.fleet,
      STRATEGY_LABELS[result.strategy],
      result.total.attempts,
      result.total.resumed,
      result.total.fullHandshakes,
      result.total.errors,
      percent(result.before.resumed, result.before.attempts),
      percent(result.during.resumed, result.during.attempts),
      percent(result.after.resumed, result.after.attempts),
      result.rotationsSeconds.toFixed(1),
    ]),
  ];
  console.log(`Continuity: ${settings.rotations} rotations, ${settings.clients} clients (TLS 1.2 and 1.3 alternately), node delays up to ${settings.maxNodeDelayMs} ms, seed ${seed}`);
  console.log(table(rows));
  const json = writeJson('continuity.json', { machine: machine(), settings, seed, results });
  const panels: Panel[] = PLANS.map((plan) => {
    const label = `${plan.nodes} ${plan.flavor} nodes`;
    return {
      title: `${label}: ${settings.rotations} rotations, ${settings.clients} clients reconnecting through the load balancer`,
      series: results
        .filter((result) => result.fleet === label)
        .map((result) => ({
          label: STRATEGY_LABELS[result.strategy],
          rotationsEndAt: result.rotationsSeconds,
          points: result.timeline.filter((point) => point.attempts >= MIN_ATTEMPTS_PER_POINT).map((point) => ({ t: point.t, rate: (100 * point.resumed) / point.attempts })),
        })),
    };
  });
  const chart = join(PROJECT_ROOT, 'docs', 'continuity.svg');
  mkdirSync(join(PROJECT_ROOT, 'docs'), { recursive: true });
  writeFileSync(chart, renderChart(panels, `${settings.sampleMs} ms`));
  console.log(`wrote ${json} and ${chart}`);
}
