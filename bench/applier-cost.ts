// What the node applier costs on one real nginx node, against the floor no applier can go
// below: the server's own config test and reload (`nginx -t` then `nginx -s reload`). Each run
// applies the next generation (a real apply: key files, include, test, config dump, reload);
// floor, apply and status take turns, so that the machine's drift falls on all three alike.
// Each is timed as a whole process tree: wall time, and the CPU time of every process it
// waited for (bash's `times`). PATH as on a node: the system's python3 and nginx first.
// Run: npm run bench -- applier-cost [--runs 15]
import { spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { createKeySet, rotateKeySet, serializeKeySet, type KeySet } from '../src/core/keyset.js';
import { NODE_PATH, nodeApplierArgs } from '../src/local/applier.js';
import { startLocalFleet, type FleetNode, type LocalFleet } from '../src/local/fleet.js';
import { APPLIER_PATH } from '../src/project-paths.js';
import { shellQuote } from '../src/core/shell.js';
import { machine, median, table, waitForIdleCpu, writeJson } from './common.js';

/** The target: an apply costs at most this many times the floor. */
const TARGET_RATIO = 4;

type Measured = 'floor' | 'apply' | 'status';

interface Sample {
  wallMs: number;
  cpuMs: number;
}

/** bash's `times`, second line: the user and system time of the children it waited for. */
function childrenCpuMs(times: string): number {
  const line = times.trim().split('\n').at(-1) ?? '';
  const seconds = [...line.matchAll(/(\d+)m([\d.]+)s/g)].map(([, minutes, rest]) => Number(minutes) * 60 + Number(rest));
  if (seconds.length !== 2) throw new Error(`could not read bash's times: ${JSON.stringify(times)}`);
  return ((seconds[0] as number) + (seconds[1] as number)) * 1000;
}

/** Runs `script` in bash (stdin from `input`), and times it with everything it started. */
function measure(script: string, input = ''): Sample {
  const start = performance.now();
  const run = spawnSync('bash', ['-c', `{ ${script} ; } >/dev/null 2>&1; status=$?; times; exit $status`], { input, encoding: 'utf8', env: { ...process.env, PATH: NODE_PATH } });
  const wallMs = performance.now() - start;
  if (run.status !== 0) throw new Error(`exit ${run.status}: ${script}`);
  return { wallMs, cpuMs: childrenCpuMs(run.stdout) };
}

async function waitForReload(fleet: LocalFleet, node: FleetNode, run: () => Sample): Promise<Sample> {
  const before = fleet.workerPids(node);
  const sample = run();
  await fleet.waitForReload(node, before);
  return sample;
}

export async function applierCostBenchmark(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { runs: { type: 'string', default: '15' } } });
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 3) throw new Error('--runs must be a whole number of at least 3');
  const fleet = await startLocalFleet({ nodeCount: 1 });
  try {
    const node = fleet.nodes[0] as FleetNode;
    const applier = ['bash', APPLIER_PATH, ...nodeApplierArgs(node)].map(shellQuote).join(' ');
    const floor = `bash -c ${shellQuote(node.testCommand)} && bash -c ${shellQuote(node.reloadCommand)}`;
    const sets: KeySet[] = [createKeySet()];
    for (let index = 0; index <= runs; index += 1) sets.push(rotateKeySet(sets.at(-1) as KeySet, 1));
    await waitForReload(fleet, node, () => measure(applier, serializeKeySet(sets[0] as KeySet)));
    await waitForIdleCpu();
    const samples: Record<Measured, Sample[]> = { floor: [], apply: [], status: [] };
    for (let index = 1; index <= runs; index += 1) {
      samples.floor.push(await waitForReload(fleet, node, () => measure(floor)));
      samples.apply.push(await waitForReload(fleet, node, () => measure(applier, serializeKeySet(sets[index] as KeySet))));
      samples.status.push(measure(`${applier} --status`));
    }
    const medians = Object.fromEntries(
      (Object.entries(samples) as [Measured, Sample[]][]).map(([what, list]) => [what, { wallMs: median(list.map((sample) => sample.wallMs)), cpuMs: median(list.map((sample) => sample.cpuMs)) }]),
    ) as Record<Measured, Sample>;
    const ratio = (what: Measured, figure: keyof Sample): string => (medians[what][figure] / medians.floor[figure]).toFixed(1);
    console.log(`\nThe applier on one nginx node, against nginx -t and nginx -s reload: medians of ${runs} runs each, taken in turn`);
    console.log(
      table([
        ['what', 'wall (ms)', 'CPU (ms)', 'wall / floor', 'CPU / floor'],
        ['floor: nginx -t; nginx -s reload', medians.floor.wallMs.toFixed(1), medians.floor.cpuMs.toFixed(1), '1.0', '1.0'],
        ['apply (next generation, reload)', medians.apply.wallMs.toFixed(1), medians.apply.cpuMs.toFixed(1), ratio('apply', 'wallMs'), ratio('apply', 'cpuMs')],
        ['status', medians.status.wallMs.toFixed(1), medians.status.cpuMs.toFixed(1), ratio('status', 'wallMs'), ratio('status', 'cpuMs')],
      ]),
    );
    console.log(`target: an apply costs at most ${TARGET_RATIO} times the floor`);
    console.log(`results: ${writeJson('applier-cost.json', { machine: machine(), runs, targetRatio: TARGET_RATIO, medians, samples })}`);
  } finally {
    await fleet.stop();
  }
}
