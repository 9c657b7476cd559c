// A rotation of a large fleet, simulated: the rotation function's handler (its real steps, SSM
// commander and retries) against the Run Command fake of the test suite, on a compressed clock,
// with 1,000 to 10,000 tagged nodes. Each step is one Lambda invocation with the function's
// 15 minutes; a step that runs out of time fails, and Secrets Manager retries the rotation from
// createSecret with the same token. The verifier's part is measured for real: N logical nodes
// over 3 real nginx processes, as `verifier-scale` does, with the tickets captured before.
// Run: npm run bench -- fleet-scale [--sizes 1000,5000,10000] [--max-concurrency 50] [--apply-ms 3000] [--status-ms 2000] [--skip-verifier]
import FakeTimers from '@sinonjs/fake-timers';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { VERIFIER_TIMEOUT_SECONDS } from '../src/aws/contract.js';
import { createKeySet, currentKey, EMPTY_KEY_SET_PLACEHOLDER } from '../src/core/keyset.js';
import { startLocalFleet } from '../src/local/fleet.js';
import { captureSources, captureTickets, verifyFleet } from '../src/verify/verifier.js';
import { FakeFleet, FakeSecret, FakeVerifier, mockAws } from '../test/support/aws-fakes.js';
import { PROJECT_ROOT } from '../src/project-root.js';
import { renderBars } from './chart.js';
import { applyEverywhere, logicalNodes, machine, table, writeJson } from './common.js';

const STEPS = ['createSecret', 'setSecret', 'testSecret', 'finishSecret'] as const;
/** The rotation function's timeout in the stack: every step has the whole of it. */
const STEP_TIMEOUT_MS = 900_000;
/** Secrets Manager retries a failed rotation; the benchmark gives up after this many attempts. */
const MAX_ATTEMPTS = 5;

interface StepFigures {
  step: string;
  invocations: number;
  /** On the compressed clock: the sum of its invocations. */
  seconds: number;
  ssmCalls: Record<string, number>;
}

interface SizeResult {
  nodes: number;
  steps: StepFigures[];
  attempts: number;
  rotationSeconds: number;
  applyCommands: number;
  verifier: { handshakes: number; seconds: number; cpuSeconds: number; rssGrowthMiB: number; ok: boolean };
}

type Handler = (event: { Step: string; SecretId: string; ClientRequestToken: string }, context: unknown) => Promise<void>;

/** One invocation, as Lambda runs it: the remaining time falls with the (fake) clock. */
function lambdaContext(): { functionName: string; awsRequestId: string; getRemainingTimeInMillis(): number } {
  const end = Date.now() + STEP_TIMEOUT_MS;
  return { functionName: 'rotation', awsRequestId: `request-${end}`, getRemainingTimeInMillis: () => Math.max(0, end - Date.now()) };
}

async function onClock<T>(clock: ReturnType<typeof FakeTimers.install>, invocation: Promise<T>): Promise<T> {
  let settled = false;
  const tracked = invocation.finally(() => {
    settled = true;
  });
  tracked.catch(() => undefined);
  while (!settled) await clock.tickAsync(1_000);
  return tracked;
}

/** The SSM calls made so far, by API. */
function ssmCallsOf(mock: ReturnType<typeof mockAws>['ssm']): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const call of mock.calls()) {
    const name = (call.args[0] as { constructor: { name: string } }).constructor.name.replace(/Command$/, '');
    counts[name] = (counts[name] ?? 0) + 1;
  }
  return counts;
}

function difference(after: Record<string, number>, before: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(after).map(([name, count]) => [name, count - (before[name] ?? 0)]).filter(([, count]) => (count as number) > 0));
}

/** One rotation (after a first one) of `size` simulated nodes through the handler, step by step, with Secrets Manager's retries. */
async function simulateRotation(handler: Handler, size: number, applyMs: number, statusMs: number): Promise<Omit<SizeResult, 'verifier'>> {
  const secret = new FakeSecret(EMPTY_KEY_SET_PLACEHOLDER);
  const fleet = new FakeFleet(secret, Array.from({ length: size }, (_, index) => ({ instanceId: `i-${index.toString(16).padStart(17, '0')}`, keys: [], applyMs, statusMs })));
  const mocks = mockAws(secret, fleet, new FakeVerifier());
  const clock = FakeTimers.install({ toFake: ['Date', 'setTimeout', 'clearTimeout'] });
  const stdout = process.stdout.write.bind(process.stdout);
  const stderr = process.stderr.write.bind(process.stderr);
  // The handler's log lines, metrics and Powertools' warnings: not the benchmark's output.
  process.stdout.write = (() => true) as typeof process.stdout.write;
  process.stderr.write = (() => true) as typeof process.stderr.write;
  try {
    const rotate = async () => {
      const token = secret.startRotation();
      const figures = new Map<string, StepFigures>(STEPS.map((step) => [step, { step, invocations: 0, seconds: 0, ssmCalls: {} }]));
      const started = Date.now();
      const failures: string[] = [];
      for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
        let failed = false;
        for (const step of STEPS) {
          const before = ssmCallsOf(mocks.ssm);
          const invoked = Date.now();
          const outcome = await onClock(clock, handler({ Step: step, SecretId: secret.arn, ClientRequestToken: token }, lambdaContext())).then(
            () => true,
            (error: Error) => {
              failures.push(`${step}: ${error.message.slice(0, 300)}`);
              return false;
            },
          );
          const entry = figures.get(step) as StepFigures;
          entry.invocations += 1;
          entry.seconds += (Date.now() - invoked) / 1000;
          for (const [name, count] of Object.entries(difference(ssmCallsOf(mocks.ssm), before))) entry.ssmCalls[name] = (entry.ssmCalls[name] ?? 0) + count;
          if (!outcome) {
            failed = true;
            break;
          }
        }
        if (!failed) return { steps: [...figures.values()], attempts: attempt, rotationSeconds: (Date.now() - started) / 1000 };
      }
      throw new Error(`the rotation of ${size} nodes did not finish in ${MAX_ATTEMPTS} attempts: ${failures.join(' | ')}`);
    };
    // The first set, then the rotation measured: g to g+1, with the gate's status round.
    await rotate();
    const commandsBefore = fleet.commands.length;
    const measured = await rotate();
    const applyCommands = fleet.commands.slice(commandsBefore).filter((command) => command.action === 'apply').length;
    if (!fleet.nodes.every((node) => node.generation === 2)) throw new Error(`not every one of ${size} nodes ended on generation 2`);
    return { nodes: size, ...measured, applyCommands };
  } finally {
    process.stdout.write = stdout;
    process.stderr.write = stderr;
    clock.uninstall();
    mocks.secrets.restore();
    mocks.ssm.restore();
    mocks.lambda.restore();
  }
}

/** The verifier function's work for `size` nodes, for real: logical nodes over 3 nginx processes, tickets captured before. */
async function measureVerifier(fleet: Awaited<ReturnType<typeof startLocalFleet>>, expectedKey: string, size: number): Promise<SizeResult['verifier']> {
  const targets = logicalNodes(fleet, size);
  const baseline = process.memoryUsage().rss;
  let peak = baseline;
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 50);
  // The client's side of every handshake is this process's CPU; the nginx processes are others.
  const cpuBefore = process.cpuUsage();
  const started = Date.now();
  try {
    const ticketsBefore = await captureTickets(captureSources(targets, 'bench'));
    const report = await verifyFleet(targets, { expectedKey, ticketsBefore });
    const cpu = process.cpuUsage(cpuBefore);
    const handshakes = ticketsBefore.length + size * 2 + report.pairs.tried + report.continuity.tried;
    return { handshakes, seconds: (Date.now() - started) / 1000, cpuSeconds: (cpu.user + cpu.system) / 1e6, rssGrowthMiB: Math.round((peak - baseline) / 2 ** 20), ok: report.ok };
  } finally {
    clearInterval(sampler);
  }
}

export async function fleetScaleBenchmark(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      sizes: { type: 'string', default: '1000,5000,10000' },
      'max-concurrency': { type: 'string', default: '50' },
      'apply-ms': { type: 'string', default: '3000' },
      'status-ms': { type: 'string', default: '2000' },
      /** The simulation alone, in seconds: no real verifier handshakes. */
      'skip-verifier': { type: 'boolean', default: false },
    },
  });
  const sizes = (values.sizes ?? '').split(',').map(Number).filter((size) => size > 0);
  const applyMs = Number(values['apply-ms']);
  const statusMs = Number(values['status-ms']);
  Object.assign(process.env, {
    KEY_LENGTH: '80',
    ROTATION_INTERVAL_SECONDS: '43200',
    TICKET_LIFETIME_SECONDS: '43200',
    DOCUMENT_NAME: 'TicketKeys-NodeApplier',
    TARGET_TAG_KEY: 'TicketKeyFleet',
    TARGET_TAG_VALUE: 'edge',
    MAX_CONCURRENCY: values['max-concurrency'],
    MAX_ERRORS: '0',
    COMMAND_OUTPUT_LOG_GROUP: 'ticket-keys-output',
    VERIFIER_FUNCTION_NAME: 'ticket-keys-verifier',
    AWS_REGION: 'eu-west-1',
    POWERTOOLS_SERVICE_NAME: 'tls-ticket-key-rotation',
  });
  const { handler } = (await import('../lambda/rotation.js')) as unknown as { handler: Handler };

  const results: SizeResult[] = [];
  const fleet = await startLocalFleet({ nodeCount: 3 });
  try {
    const set = createKeySet();
    await applyEverywhere(fleet, set);
    for (const size of sizes) {
      const simulated = Date.now();
      const rotation = await simulateRotation(handler, size, applyMs, statusMs);
      console.log(`${size} nodes: rotation simulated in ${((Date.now() - simulated) / 1000).toFixed(1)} s of real time`);
      const verifier = values['skip-verifier'] === true ? { handshakes: 0, seconds: 0, cpuSeconds: 0, rssGrowthMiB: 0, ok: true } : await measureVerifier(fleet, currentKey(set).name, size);
      results.push({ ...rotation, verifier });
    }
  } finally {
    await fleet.stop();
  }

  const apis = [...new Set(results.flatMap((result) => result.steps.flatMap((step) => Object.keys(step.ssmCalls))))].sort();
  console.log(`Fleet scale: MaxConcurrency ${values['max-concurrency']}, an apply ${applyMs} ms and a status ${statusMs} ms per node (assumed), 15 minutes per step`);
  console.log(
    table([
      ['nodes', 'step', 'invocations', 'seconds', ...apis],
      ...results.flatMap((result) => result.steps.map((step) => [result.nodes, step.step, step.invocations, step.seconds.toFixed(0), ...apis.map((api) => step.ssmCalls[api] ?? 0)])),
    ]),
  );
  console.log(
    table([
      ['nodes', 'attempts', 'rotation (s)', 'apply commands', 'verifier handshakes', 'verifier (s)', 'verifier CPU (s)', 'CPU per handshake (ms)', 'RSS growth (MiB)', 'verdict'],
      ...results.map((result) => [
        result.nodes,
        result.attempts,
        result.rotationSeconds.toFixed(0),
        result.applyCommands,
        result.verifier.handshakes,
        result.verifier.seconds.toFixed(1),
        result.verifier.cpuSeconds.toFixed(1),
        result.verifier.handshakes > 0 ? ((1000 * result.verifier.cpuSeconds) / result.verifier.handshakes).toFixed(2) : '-',
        result.verifier.rssGrowthMiB,
        result.verifier.ok ? 'PASS' : 'FAIL',
      ]),
    ]),
  );
  const chart = join(PROJECT_ROOT, 'docs', 'fleet-scale.svg');
  const seconds = (result: SizeResult, step: string) => result.steps.find((entry) => entry.step === step)?.seconds ?? 0;
  writeFileSync(
    chart,
    renderBars(
      `A rotation of a simulated fleet: MaxConcurrency ${values['max-concurrency']}, ${applyMs / 1000} s per apply, ${statusMs / 1000} s per status`,
      'seconds',
      ['setSecret (all invocations)', 'testSecret: status', 'verifier (measured)'],
      results.map((result) => ({ label: `${result.nodes.toLocaleString('en-US')} nodes`, values: [seconds(result, 'setSecret'), seconds(result, 'testSecret'), result.verifier.seconds] })),
      [
        { value: STEP_TIMEOUT_MS / 1000, label: 'one step (15 min)' },
        { value: VERIFIER_TIMEOUT_SECONDS, label: 'verifier (5 min)' },
      ],
    ),
  );
  console.log(`wrote ${chart}`);
  console.log(`wrote ${writeJson('fleet-scale.json', { machine: machine(), maxConcurrency: values['max-concurrency'], applyMs, statusMs, results })}`);
}
