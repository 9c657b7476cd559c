import { renameSync } from 'node:fs';
import net from 'node:net';
import { afterAll, beforeAll, expect, vi } from 'vitest';
import { createKeySet, parseKeySet, rotateKeySet, serializeKeySet, type KeyLength, type KeySet } from '../../src/core/keyset.js';
import type { SecretStore } from '../../src/core/secret-store.js';
import { reloaded } from '../../src/core/applier-summary.js';
import { nodeApplierArgs, runApplier, type ApplierRun, type OnboardingSummary } from '../../src/local/applier.js';
import type { ServerFlavor } from '../../src/flavors/index.js';
import { startLocalFleet, type FleetNode, type LocalFleet } from '../../src/local/fleet.js';
import { handshake, type TlsVersion } from '../../src/tls/probe.js';
import { malformedKeySets } from './malformed-key-sets.js';

/** Generations 1..count of one lineage, keeping `retained` previous keys. */
export function lineage(count: number, retained = 1, keyLength: KeyLength = 80): KeySet[] {
  const sets = [createKeySet(keyLength)];
  while (sets.length < count) sets.push(rotateKeySet(sets[sets.length - 1] as KeySet, retained));
  return sets;
}

/** Runs the real applier on a node and waits for nginx to finish reloading when it applied. */
export async function applyTo(fleet: LocalFleet, node: FleetNode, set: KeySet | string, extraArgs: string[] = []): Promise<ApplierRun> {
  const before = fleet.workerPids(node);
  const run = await runApplier([...nodeApplierArgs(node), ...extraArgs], typeof set === 'string' ? set : serializeKeySet(set));
  if (reloaded(run.summary)) await fleet.waitForReload(node, before);
  return run;
}

export async function applyToAll(fleet: LocalFleet, set: KeySet, extraArgs: string[] = []): Promise<void> {
  for (const node of fleet.nodes) {
    const run = await applyTo(fleet, node, set, extraArgs);
    expect(run.exitCode, run.stderr).toBe(0);
  }
}

/**
 * Three real nodes of `flavor` for one describe block, started before its tests and stopped
 * after them, when every applier output `apply` collected is searched for the material of `sets`.
 */
export function applierFleet(flavor: ServerFlavor, sets: KeySet[]) {
  let started: LocalFleet | undefined;
  const outputs: string[] = [];
  beforeAll(async () => {
    started = await startLocalFleet({ nodeCount: 3, flavor });
  });
  afterAll(async () => {
    await started?.stop();
    expect(outputs.length).toBeGreaterThan(10);
    expectNoMaterial(outputs.join('\n'), sets);
  });
  const fleet = (): LocalFleet => {
    if (started === undefined) throw new Error(`the ${flavor} fleet did not start`);
    return started;
  };
  const apply = async (node: FleetNode, set: KeySet | string, extra: string[] = []): Promise<ApplierRun> => {
    const run = await applyTo(fleet(), node, set, extra);
    outputs.push(run.stdout, run.stderr);
    return run;
  };
  return {
    fleet,
    outputs,
    targets: () => fleet().nodes.map(({ name, host, port }) => ({ name, host, port })),
    apply,
    /** Every malformed variant of `base` is refused by the applier on `node` (exit 3) with the engine's own message. */
    async expectMalformedRefused(node: FleetNode, base: KeySet): Promise<void> {
      const cases = malformedKeySets(base);
      expect(cases.length).toBeGreaterThanOrEqual(12);
      for (const [what, make, message] of cases) {
        const input = make();
        const run = await apply(node, input);
        expect(run.exitCode, what).toBe(3);
        expect(run.summary.error, what).toMatch(message);
        expect(() => parseKeySet(input), what).toThrow(message);
      }
    },
  };
}

/** Starts `node` while the store's directory is gone, as a node that cannot reach Secrets Manager at boot. */
export async function startWithoutStore(fleet: LocalFleet, node: FleetNode): Promise<{ summary: OnboardingSummary; elapsedMs: number }> {
  const away = `${fleet.storeDir}.away`;
  renameSync(fleet.storeDir, away);
  try {
    const started = Date.now();
    const summary = await fleet.startNode(node);
    return { summary, elapsedMs: Date.now() - started };
  } finally {
    renameSync(away, fleet.storeDir);
  }
}

/** A full handshake with a node: the name of the key its ticket is encrypted with, and the session. */
export async function freshTicket(node: FleetNode, version: TlsVersion): Promise<{ keyName: string; session: Buffer }> {
  const result = await handshake(node, { version });
  expect(result.resumed).toBe(false);
  expect(result.session, `${node.name} issued no session ticket over ${version}`).toBeDefined();
  return { keyName: result.ticketKeyName as string, session: result.session as Buffer };
}

export async function resumes(node: FleetNode, session: Buffer, version: TlsVersion): Promise<boolean> {
  return (await handshake(node, { version, session })).resumed;
}

/** Every key's material as base64 and hex, and its secret part (after the name) alone. */
export function materialForms(sets: KeySet[]): string[] {
  return sets.flatMap((set) =>
    set.keys.flatMap((key) => {
      const raw = Buffer.from(key.material, 'base64');
      const secret = raw.subarray(16);
      return [key.material, raw.toString('hex'), secret.toString('base64').slice(0, 40), secret.toString('hex')];
    }),
  );
}

export function expectNoMaterial(text: string, sets: KeySet[]): void {
  for (const form of materialForms(sets)) {
    expect(text.includes(form), 'output contains key material').toBe(false);
  }
}

/** Collects what is written to stdout (Powertools logs and metrics) into `sink` until vi.restoreAllMocks(). */
export function captureStdout(sink: string[]): void {
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    sink.push(String(chunk));
    return true;
  });
}

/** One command on HAProxy's runtime API; the reply may hold key material: assert on it, never print it. */
export function haproxyRuntime(socketPath: string, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection(socketPath);
    let reply = '';
    socket.on('data', (chunk: Buffer) => (reply += chunk.toString()));
    socket.once('error', reject);
    socket.once('end', () => resolve(reply));
    socket.once('connect', () => socket.write(`${command}\n`));
  });
}

/** The JSON log lines with this message among what was written to stdout (Powertools Logger writes one per line). */
export function logLines(output: string[], message: string): Record<string, unknown>[] {
  return output
    .flatMap((chunk) => chunk.split('\n'))
    .filter((line) => line.includes(`"message":"${message}"`))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

/** The include onboarding adds for an nginx node: its managed file alone, as a pattern that matches nothing else. */
export function managedInclude(node: FleetNode): string {
  return `include ${node.includeFile.slice(0, -1)}[${node.includeFile.slice(-1)}];`;
}

/** The set one generation below `set`, among the versions that keep no stage. */
export async function olderSet(store: SecretStore, set: KeySet): Promise<KeySet> {
  for (const versionId of await store.unlabelledVersionIds()) {
    const older = parseKeySet((await store.getVersion({ versionId }))!.value);
    if (older.generation === set.generation - 1) return older;
  }
  throw new Error(`no version holds generation ${set.generation - 1}`);
}
