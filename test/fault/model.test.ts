// Fault matrix, model test: random interleavings of rotation steps, partial rollouts, node
// restarts, reboots, outages, boot-time fetches that work or fail, association runs and
// failures, driven through the real rotation steps (src/core/rotation.ts) and the real local
// secret store. The nodes are models of the applier's rules. Two invariants hold after every
// action:
//
// 1. No two live nodes stop resuming each other's tickets. A live node serves a managed set and
//    has seen every rollout since it last converged. A node that was down during a rollout, or
//    booted with an empty key directory, and whose boot-time fetch could not reach the store,
//    serves a stale set or keys of its own until the association applies AWSCURRENT.
// 2. The gate: while such a node is up and behind, no rotation moves the fleet further ahead of
//    it than it was when it came back (or one generation, the most a rollout in progress makes).
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKeySet, currentKey, parseKeySet, type KeySet } from '../../src/core/keyset.js';
import {
  applyPending,
  createPending,
  finishPending,
  testPending,
  RotationError,
  type FleetCommander,
  type FleetVerifier,
  type NodeResult,
  type NodeStatus,
  type RotationContext,
} from '../../src/core/rotation.js';
import { AWSCURRENT } from '../../src/core/secret-store.js';
import { FileSecretStore } from '../../src/local/file-secret-store.js';
import { makeMemoryDirectory } from '../../src/local/fleet.js';
import type { Failure, VerificationReport } from '../../src/verify/verifier.js';

interface ModelNode {
  name: string;
  up: boolean;
  /** The set in the key directory (tmpfs): what a restart loads. */
  disk: KeySet | undefined;
  /** What the server runs: a managed set, or keys of its own after a boot with an empty key directory. */
  serving: KeySet;
  /** Serves a managed set and has seen every rollout since it last converged (see the top of the file). */
  live: boolean;
  /** A rollout ran while it was down, since it last converged. */
  missedRollout: boolean;
  /** How many generations the fleet may be ahead of it: set when it comes up (at least 1). */
  allowedGap: number;
  /** The next apply on this node fails (disk full, config test failing, SSM timing out): nothing changes. */
  failNextApply: boolean;
}

const names = (set: KeySet): Set<string> => new Set(set.keys.map((key) => key.name));
const resumesTicketsOf = (reader: ModelNode, writer: ModelNode): boolean => names(reader.serving).has(currentKey(writer.serving).name);

/** The applier's rules: refuse an older generation or another set of the same one; fail when told to. */
function applyToNode(node: ModelNode, set: KeySet): NodeResult {
  const keys = set.keys.map((key) => key.name);
  if (node.failNextApply) {
    node.failNextApply = false;
    return { node: node.name, ok: false, keys: [], error: 'injected failure: the previous set was restored' };
  }
  const active = node.disk;
  if (active !== undefined && set.generation < active.generation) return { node: node.name, ok: false, keys: [], error: `generation ${set.generation} is older than the active generation ${active.generation}` };
  if (active !== undefined && set.generation === active.generation) {
    if (active.keys.map((key) => key.name).join() !== keys.join()) return { node: node.name, ok: false, keys: [], error: 'already active with other keys' };
    return { node: node.name, ok: true, generation: set.generation, keys, action: 'unchanged' };
  }
  node.disk = set;
  node.serving = set;
  return { node: node.name, ok: true, generation: set.generation, keys, action: 'applied' };
}

class ModelFleet implements FleetCommander, FleetVerifier {
  readonly nodes: ModelNode[];
  private readonly captured = new Map<string, string[]>();

  constructor(
    count: number,
    private readonly store: FileSecretStore,
  ) {
    this.nodes = Array.from({ length: count }, (_, index) => ({ name: `node${index + 1}`, up: true, disk: undefined, serving: createKeySet(), live: false, missedRollout: false, allowedGap: 1, failNextApply: false }));
  }

  private async version(versionId: string): Promise<KeySet> {
    const version = await this.store.getVersion({ versionId });
    if (version === undefined) throw new Error(`no version ${versionId}`);
    return parseKeySet(version.value);
  }

  async apply(versionId: string): Promise<NodeResult[]> {
    const set = await this.version(versionId);
    for (const node of this.nodes) if (!node.up) node.missedRollout = true;
    return this.nodes.filter((node) => node.up).map((node) => applyToNode(node, set));
  }

  async status(): Promise<NodeStatus[]> {
    return this.nodes
      .filter((node) => node.up)
      .map((node) => ({ node: node.name, keys: node.disk?.keys.map((key) => key.name) ?? [], ...(node.disk ? { generation: node.disk.generation } : {}) }));
  }

  async captureBefore(versionId: string): Promise<void> {
    if (!this.captured.has(versionId)) this.captured.set(versionId, this.nodes.filter((node) => node.up).map((node) => currentKey(node.serving).name));
  }

  /** Down nodes serve nothing; the model's commander skips none, so the gate never asks. */
  async observe(nodes: string[]): Promise<Record<string, string | null>> {
    return Object.fromEntries(nodes.map((name) => {
      const node = this.nodes.find((candidate) => candidate.name === name);
      return [name, node?.up === true ? currentKey(node.serving).name : null];
    }));
  }

  /** What the real verifier checks, on the models: the key every node encrypts with, every pair, the tickets from before. */
  async verify(versionId: string, expectedKey: string): Promise<VerificationReport> {
    const up = this.nodes.filter((node) => node.up);
    const captured = this.captured.get(versionId) ?? [];
    const failures: Failure[] = [
      ...up.filter((node) => currentKey(node.serving).name !== expectedKey).map((node) => ({ kind: 'wrong key' as const, subject: node.name, detail: `${node.name} encrypts with another key` })),
      ...up.flatMap((reader) =>
        up.filter((writer) => !resumesTicketsOf(reader, writer)).map((writer) => ({ kind: 'not resumed' as const, subject: `${writer.name} -> ${reader.name}`, detail: `${reader.name} refuses ${writer.name}'s tickets` })),
      ),
      ...up.flatMap((node) => captured.filter((key) => !names(node.serving).has(key)).map(() => ({ kind: 'continuity' as const, subject: node.name, detail: `${node.name} refuses a ticket from before` }))),
    ];
    const pairs = up.length * (up.length - 1);
    const lost = failures.filter((failure) => failure.kind === 'not resumed').length;
    const continuity = up.length * captured.length;
    const notContinued = failures.filter((failure) => failure.kind === 'continuity').length;
    return {
      ok: failures.length === 0,
      expectedKey,
      expectedKeyInferred: false,
      nodes: [],
      pairs: { tried: pairs, resumed: pairs - lost },
      pairsAcrossKeys: 0,
      continuity: { tried: continuity, resumed: continuity - notContinued },
      revocation: { tried: 0, refused: 0 },
    retired: { tried: 0, fellBack: 0 },
      peersPerNode: up.length - 1,
      failures,
      durationMs: 0,
    };
  }

  /** How many generations the most advanced running node is ahead of this one (0 for a node with no managed set). */
  gap(node: ModelNode): number {
    if (node.disk === undefined) return 0;
    return Math.max(...this.nodes.filter((other) => other.up && other.disk).map((other) => other.disk!.generation)) - node.disk.generation;
  }

  /**
   * The association, or the boot-time fetch before a start: AWSCURRENT on one node. A node
   * already on the pending set refuses the older one, and stays on a set the others resume.
   */
  associate(node: ModelNode, current: KeySet | undefined): void {
    if (!node.up || current === undefined) return;
    const result = applyToNode(node, current);
    if (result.ok || (node.disk !== undefined && node.disk.generation > current.generation)) {
      node.live = true;
      node.missedRollout = false;
      node.allowedGap = 1;
    }
  }
}

const NODES = 3;
/** MODEL_RUNS=20000 explores deeper (about two minutes); the suite runs 1,500. */
const RUNS = Number(process.env.MODEL_RUNS ?? 1500);
const STEPS = [createPending, applyPending, testPending, finishPending] as const;

/** `fetched`: the boot-time fetch before the server starts reached the store (restart, reboot, up). */
const nodeAction = (kind: 'fail next apply' | 'restart' | 'reboot' | 'down' | 'up' | 'associate') =>
  fc.record({ kind: fc.constant(kind), node: fc.nat({ max: NODES - 1 }), fetched: fc.boolean() });

const actions = fc.array(
  fc.oneof(
    { weight: 8, arbitrary: fc.record({ kind: fc.constant('step' as const), newToken: fc.nat({ max: 7 }).map((draw) => draw === 0) }) },
    { weight: 3, arbitrary: nodeAction('fail next apply') },
    { weight: 2, arbitrary: nodeAction('down') },
    { weight: 2, arbitrary: nodeAction('up') },
    { weight: 2, arbitrary: nodeAction('associate') },
    { weight: 1, arbitrary: nodeAction('restart') },
    { weight: 1, arbitrary: nodeAction('reboot') },
  ),
  { minLength: 5, maxLength: 60 },
);

describe('fault matrix: a model of random interleavings under the gate', () => {
  let root: string;
  const totals = { runs: 0, actions: 0, stepFailures: 0, gateHeld: 0, promotions: 0, faults: 0, invariantChecks: 0, gapChecks: 0 };

  beforeAll(() => {
    root = makeMemoryDirectory('ticket-model-');
  });
  afterAll(() => {
    rmSync(root, { recursive: true, force: true });
    console.log(
      `model runs: ${totals.runs}, actions: ${totals.actions}, faults injected: ${totals.faults}, rotation steps refused or failed: ${totals.stepFailures} (the gate: ${totals.gateHeld}), rotations finished: ${totals.promotions}, pairwise checks: ${totals.invariantChecks}, gap checks: ${totals.gapChecks}`,
    );
  });

  it('no two live nodes ever stop resuming each other\'s tickets, the gate never lets the fleet run further ahead of a node behind, and the fleet always converges afterwards', async () => {
    await fc.assert(
      fc.asyncProperty(actions, fc.constantFrom(3_600, 43_200, 86_400, 129_600), async (script, ticketLifetimeSeconds) => {
        const store = new FileSecretStore(join(root, randomUUID()));
        const fleet = new ModelFleet(NODES, store);
        const context: RotationContext = { store, commander: fleet, verifier: fleet, policy: { rotationIntervalSeconds: 43_200, ticketLifetimeSeconds, keyLength: 80 } };
        const currentSet = async (): Promise<KeySet | undefined> => {
          const version = await store.getVersion({ stage: AWSCURRENT });
          return version ? parseKeySet(version.value) : undefined;
        };
        const expectGateHeld = (after: string): void => {
          for (const node of fleet.nodes.filter((candidate) => candidate.up && candidate.disk)) {
            totals.gapChecks += 1;
            if (fleet.gap(node) > node.allowedGap) {
              throw new Error(`after ${after}: the fleet is ${fleet.gap(node)} generations ahead of ${node.name}, which is up and was at most ${node.allowedGap} behind`);
            }
          }
        };
        const expectLiveNodesResumeEachOther = (after: string): void => {
          const live = fleet.nodes.filter((node) => node.live);
          for (const reader of live) {
            for (const writer of live) {
              totals.invariantChecks += 1;
              if (!resumesTicketsOf(reader, writer)) {
                throw new Error(`after ${after}: ${reader.name} (generation ${reader.serving.generation}) refuses tickets of ${writer.name} (generation ${writer.serving.generation})`);
              }
            }
          }
        };
        const runStep = async (token: string, step: number): Promise<boolean> => {
          try {
            await STEPS[step]!(context, token);
            return true;
          } catch (error) {
            if (!(error instanceof RotationError)) throw error;
            totals.stepFailures += 1;
            if (error.message.startsWith('gate closed')) totals.gateHeld += 1;
            return false;
          }
        };

        // The first rotation on a healthy fleet, then every node joins through the association.
        const first = randomUUID();
        for (let step = 0; step < STEPS.length; step++) expect(await runStep(first, step)).toBe(true);
        for (const node of fleet.nodes) fleet.associate(node, await currentSet());
        expectLiveNodesResumeEachOther('the first rotation');

        let token: string | undefined;
        let nextStep = 0;
        for (const action of script) {
          totals.actions += 1;
          if (action.kind === 'step') {
            if (token === undefined || action.newToken) {
              token = randomUUID();
              nextStep = 0;
            }
            if (await runStep(token, nextStep)) {
              nextStep += 1;
              if (nextStep === STEPS.length) {
                totals.promotions += 1;
                token = undefined;
              }
            } else {
              // Secrets Manager retries the rotation from its first step.
              nextStep = 0;
            }
          } else {
            totals.faults += action.kind === 'associate' ? 0 : 1;
            const node = fleet.nodes[action.node]!;
            switch (action.kind) {
              case 'fail next apply':
                node.failNextApply = true;
                break;
              case 'restart':
                // The server restarts from the key directory; the association need not run again.
                if (node.up && node.disk) node.serving = node.disk;
                if (node.up && action.fetched) fleet.associate(node, await currentSet());
                break;
              case 'reboot':
                node.disk = undefined;
                node.serving = createKeySet();
                node.up = true;
                node.live = false;
                node.missedRollout = false;
                node.allowedGap = 1;
                if (action.fetched) fleet.associate(node, await currentSet());
                break;
              case 'down':
                node.up = false;
                node.live = false;
                break;
              case 'up':
                if (!node.up) {
                  node.up = true;
                  node.serving = node.disk ?? createKeySet();
                  // Coming back does not make it converge: a rollout it missed stays missed until the association.
                  node.live = node.disk !== undefined && !node.missedRollout;
                  node.allowedGap = Math.max(1, fleet.gap(node));
                  if (action.fetched) fleet.associate(node, await currentSet());
                }
                break;
              case 'associate':
                fleet.associate(node, await currentSet());
                break;
            }
          }
          const after = action.kind === 'step' ? `step ${STEPS[nextStep === 0 ? 0 : nextStep - 1]!.name}` : `${action.kind} ${fleet.nodes[action.node]!.name}`;
          expectLiveNodesResumeEachOther(after);
          expectGateHeld(after);
        }

        // Afterwards: every node up, the association everywhere, and one more rotation finishes.
        for (const node of fleet.nodes) {
          node.failNextApply = false;
          if (!node.up) {
            node.up = true;
            node.serving = node.disk ?? createKeySet();
            node.missedRollout = false;
          }
          fleet.associate(node, await currentSet());
        }
        const last = randomUUID();
        for (let step = 0; step < STEPS.length; step++) {
          if (!(await runStep(last, step))) throw new Error(`the fleet did not converge: step ${STEPS[step]!.name} failed after every node was brought back`);
        }
        const final = (await currentSet())!;
        expect(fleet.nodes.every((node) => node.live && currentKey(node.serving).name === currentKey(final).name)).toBe(true);
        expectLiveNodesResumeEachOther('convergence');
        totals.runs += 1;
      }),
      { numRuns: RUNS },
    );
    expect(totals.runs).toBeGreaterThanOrEqual(RUNS);
    expect(totals.stepFailures).toBeGreaterThan(0);
    expect(totals.gateHeld).toBeGreaterThan(0);
    // The invariant would hold trivially if faults kept every rotation from finishing.
    expect(totals.promotions).toBeGreaterThan(totals.runs / 4);
  }, 240_000);
});
