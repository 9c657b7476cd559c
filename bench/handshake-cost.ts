// What a lost resumption costs: server CPU time per full handshake against per resumed one, on
// the same real nginx node (one worker), TLS 1.2 and 1.3, with an ECDSA P-256 and an RSA 2048
// certificate. The CPU time is the worker's own (utime + stime from /proc), so the clients'
// work on the same machine does not count. Each connection also serves one small HTTP request,
// the same in both modes.
// Run: npm run bench -- handshake-cost [--handshakes 2000]
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { createKeySet, serializeKeySet } from '../src/core/keyset.js';
import { nodeApplierArgs, runApplier } from '../src/local/applier.js';
import { startLocalFleet, type CertificateKind, type FleetNode, type LocalFleet } from '../src/local/fleet.js';
import { handshake, TLS_VERSIONS, type TlsVersion } from '../src/tls/probe.js';
import { machine, median, table, waitForIdleCpu, writeJson } from './common.js';

const CERTIFICATES: CertificateKind[] = ['ecdsa-p256', 'rsa-2048'];
const CONCURRENCY = 4;
const WARM_UP = 50;

type Mode = 'full' | 'resumed';

interface Cell {
  certificate: CertificateKind;
  version: TlsVersion;
  mode: Mode;
  handshakes: number;
  /** Connections that came out as the mode asked (resumed or not): all of them, or the cell is void. */
  asAsked: number;
  serverCpuMs: number;
  serverCpuMicrosPerHandshake: number;
}

const CLOCK_TICKS_PER_SECOND = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

/** CPU milliseconds (user + system) a process has used, from /proc/PID/stat. */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The fields after the command name, which is in parentheses and may hold spaces.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  return (ticks * 1000) / CLOCK_TICKS_PER_SECOND;
}

async function measure(fleet: LocalFleet, node: FleetNode, certificate: CertificateKind, version: TlsVersion, mode: Mode, count: number): Promise<Cell> {
  const endpoint = { host: node.host, port: node.port };
  let session = (await handshake(endpoint, { version })).session;
  let asAsked = 0;
  const connect = async (): Promise<boolean> => {
    const result = await handshake(endpoint, { version, ...(mode === 'resumed' && session ? { session } : {}) });
    if (mode === 'resumed') session = result.session ?? session;
    return result.resumed === (mode === 'resumed');
  };
  const run = async (total: number, count: (ok: boolean) => void): Promise<void> => {
    let started = 0;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (started < total) {
          started += 1;
          count(await connect());
        }
      }),
    );
  };
  await run(WARM_UP, () => undefined);
  const workers = fleet.workerPids(node);
  const before = workers.reduce((sum, pid) => sum + cpuMs(pid), 0);
  await run(count, (ok) => (asAsked += ok ? 1 : 0));
  const serverCpuMs = workers.reduce((sum, pid) => sum + cpuMs(pid), 0) - before;
  return { certificate, version, mode, handshakes: count, asAsked, serverCpuMs, serverCpuMicrosPerHandshake: Math.round((serverCpuMs * 1000) / count) };
}

export async function handshakeCostBenchmark(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { handshakes: { type: 'string', default: '2000' }, repeats: { type: 'string', default: '3' } } });
  const count = Number(values.handshakes);
  const repeats = Number(values.repeats);
  if (!Number.isInteger(count) || count < 100) throw new Error('--handshakes takes a whole number of at least 100 (the CPU clock counts in 10 ms ticks)');
  if (!Number.isInteger(repeats) || repeats < 1 || repeats % 2 === 0) throw new Error('--repeats takes an odd whole number (the median of the repeats is reported)');
  const cells: Cell[] = [];
  const idleAtStart = await waitForIdleCpu();
  if (idleAtStart < 0.9) console.error(`handshake-cost: the CPUs were only ${(idleAtStart * 100).toFixed(0)}% idle after 2 minutes of waiting; the figures will be high`);
  for (const certificate of CERTIFICATES) {
    const fleet = await startLocalFleet({ nodeCount: 1, certificate });
    try {
      const node = fleet.nodes[0] as FleetNode;
      const before = fleet.workerPids(node);
      const { summary } = await runApplier(nodeApplierArgs(node), serializeKeySet(createKeySet()));
      if (summary.action !== 'applied') throw new Error(`the applier did not apply the key set: ${summary.error ?? summary.action}`);
      await fleet.waitForReload(node, before);
      // Repeats interleave the cells, so that a noisy moment does not land on one cell only.
      for (let repeat = 0; repeat < repeats; repeat++) {
        for (const version of TLS_VERSIONS) {
          for (const mode of ['full', 'resumed'] as const) cells.push(await measure(fleet, node, certificate, version, mode, count));
        }
      }
    } finally {
      await fleet.stop();
    }
  }
  const notAsAsked = cells.filter((cell) => cell.asAsked !== cell.handshakes);
  const rows = CERTIFICATES.flatMap((certificate) =>
    TLS_VERSIONS.map((version) => {
      const micros = (mode: Mode) =>
        median(cells.filter((cell) => cell.certificate === certificate && cell.version === version && cell.mode === mode).map((cell) => cell.serverCpuMicrosPerHandshake));
      const full = micros('full');
      const resumed = micros('resumed');
      return { certificate, version, fullMicros: full, resumedMicros: resumed, ratio: full / resumed, lostResumptionMicros: full - resumed };
    }),
  );
  console.log(`Handshake cost: server CPU per connection on one nginx worker, median of ${repeats} runs of ${count} connections, ${CONCURRENCY} at a time`);
  console.log(
    table([
      ['certificate', 'TLS', 'full µs', 'resumed µs', 'full / resumed', 'a lost resumption costs µs'],
      ...rows.map((row) => [row.certificate, row.version, row.fullMicros, row.resumedMicros, `${row.ratio.toFixed(1)}x`, row.lostResumptionMicros]),
    ]),
  );
  console.log(`wrote ${writeJson('handshake-cost.json', { machine: machine(), idleAtStart, concurrency: CONCURRENCY, repeats, rows, cells })}`);
  if (notAsAsked.length > 0) {
    console.error(`these cells do not measure what they say: ${notAsAsked.map((cell) => `${cell.certificate} ${cell.version} ${cell.mode}: ${cell.asAsked}/${cell.handshakes} came out ${cell.mode}`).join('; ')}`);
    process.exitCode = 1;
  }
}
