import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { PROJECT_ROOT } from '../src/project-root.js';
import { serializeKeySet, type KeySet } from '../src/core/keyset.js';
import { nodeApplierArgs, runApplier } from '../src/local/applier.js';
import type { FleetNode, LocalFleet } from '../src/local/fleet.js';

export const RESULTS_DIR = join(PROJECT_ROOT, 'bench', 'results');

/** What the figures were measured on, written beside them. */
export function machine(): Record<string, string | number> {
  // nginx -v writes to stderr, the others to stdout.
  const firstLine = (command: string, args: string[]): string => {
    const run = spawnSync(command, args, { encoding: 'utf8' });
    return `${run.stdout ?? ''}${run.stderr ?? ''}`.split('\n')[0]?.trim() || `${command}: not found`;
  };
  return {
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    nginx: firstLine('nginx', ['-v']),
    haproxy: firstLine('haproxy', ['-v']),
    apache: firstLine('apache2', ['-v']),
    openssl: firstLine('openssl', ['version']),
    date: new Date().toISOString(),
  };
}

export function writeJson(name: string, value: unknown): string {
  const path = join(RESULTS_DIR, name);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, `${JSON.stringify(value, null, 2)}\n`);
  return path;
}

/** Rows of cells as an aligned plain-text table, the first row the header. */
export function table(rows: (string | number)[][]): string {
  const text = rows.map((row) => row.map(String));
  const widths = (text[0] ?? []).map((_, column) => Math.max(...text.map((row) => (row[column] ?? '').length)));
  return text.map((row) => row.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join('  ').trimEnd()).join('\n');
}

/** The middle value; the mean of the two middle ones for an even count. */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

export function percent(part: number, whole: number): string {
  return whole === 0 ? '-' : `${((100 * part) / whole).toFixed(1)}%`;
}

/** A graceful reload of one node, as an operator's script would do it, waiting until it finished. */
export async function reloadNode(fleet: LocalFleet, node: FleetNode): Promise<void> {
  const before = fleet.workerPids(node);
  execFileSync('bash', ['-c', node.reloadCommand], { stdio: 'ignore' });
  await fleet.waitForReload(node, before);
}

/** The machine's busy and total CPU time so far, in clock ticks, from /proc/stat. */
function cpuTicks(): { busy: number; total: number } {
  const fields = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '').trim().split(/\s+/).slice(1).map(Number);
  const total = fields.reduce((sum, value) => sum + value, 0);
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
  return { busy: total - idle, total };
}

/**
 * Waits, up to `maxWaitMs`, for a second in which the machine's CPUs are at least 90% idle:
 * CPU time per operation rises on a busy machine (shared caches, sibling hyperthreads), so
 * figures taken right after another benchmark are not comparable. Returns the idle share seen.
 */
export async function waitForIdleCpu(maxWaitMs = 120_000): Promise<number> {
  const deadline = Date.now() + maxWaitMs;
  for (;;) {
    const before = cpuTicks();
    await sleep(1000);
    const after = cpuTicks();
    const idle = 1 - (after.busy - before.busy) / Math.max(1, after.total - before.total);
    if (idle >= 0.9 || Date.now() > deadline) return idle;
  }
}

/** One set on every node of a local fleet, each reload finished. */
export async function applyEverywhere(fleet: LocalFleet, set: KeySet): Promise<void> {
  for (const node of fleet.nodes) {
    const before = fleet.workerPids(node);
    await runApplier(nodeApplierArgs(node), serializeKeySet(set));
    await fleet.waitForReload(node, before);
  }
}

/** `size` logical nodes (n0, n1…) spread over the fleet's real ones: the verifier at scale on one machine. */
export function logicalNodes(fleet: LocalFleet, size: number): { name: string; host: string; port: number }[] {
  return Array.from({ length: size }, (_, index) => {
    const node = fleet.nodes[index % fleet.nodes.length] as FleetNode;
    return { name: `n${index}`, host: node.host, port: node.port };
  });
}
