import { setTimeout as sleep } from 'node:timers/promises';
import type { FleetCommander, NodeResult, NodeStatus } from '../core/rotation.js';
import { AWSCURRENT, type SecretStore } from '../core/secret-store.js';
import { reloaded, resultFromSummary, statusFromSummary } from '../core/applier-summary.js';
import { nodeApplierArgs, runApplier } from './applier.js';
import type { FleetNode, LocalFleet } from './fleet.js';

const STOPPED = 'its server is stopped';

export interface LocalCommanderOptions {
  /** Each node starts after a random delay up to this many milliseconds, so the order is random too. */
  maxDelayMs?: number;
  random?: () => number;
}

/**
 * Runs the real node applier against each running local node, feeding it the version from the
 * store (on AWS the node fetches the version itself), and waits for each reload to finish.
 * Nodes whose server is stopped are skipped and reported so, as the SSM commander skips
 * instances that are not connected; they converge through applyCurrent (the association) when
 * they return.
 */
export class LocalFleetCommander implements FleetCommander {
  constructor(
    private readonly fleet: LocalFleet,
    private readonly store: SecretStore,
    private readonly options: LocalCommanderOptions = {},
  ) {}

  /** Results come in the order the nodes finished. */
  async apply(versionId: string): Promise<NodeResult[]> {
    const version = await this.store.getVersion({ versionId });
    if (version === undefined) throw new Error(`version ${versionId} is not in the store`);
    const random = this.options.random ?? Math.random;
    const maxDelayMs = this.options.maxDelayMs ?? 0;
    const finished: NodeResult[] = [];
    await Promise.all(
      this.fleet.runningNodes().map(async (node) => finished.push(await this.applyToNode(node, version.value, Math.floor(random() * maxDelayMs)))),
    );
    return [...finished, ...this.stoppedNodes().map((node) => ({ node, ok: false, keys: [], skipped: STOPPED }))];
  }

  private stoppedNodes(): string[] {
    const running = new Set(this.fleet.runningNodes());
    return this.fleet.nodes.filter((node) => !running.has(node)).map((node) => node.name);
  }

  /**
   * What the State Manager association does on a node, on its schedule and when a node comes
   * online: apply AWSCURRENT. Nodes that rebooted, joined late or missed a rotation converge so.
   */
  async applyCurrent(node: FleetNode): Promise<NodeResult> {
    const current = await this.store.getVersion({ stage: AWSCURRENT });
    if (current === undefined) throw new Error('the store has no AWSCURRENT version yet: run a rotation first');
    return this.applyToNode(node, current.value, 0);
  }

  private async applyToNode(node: FleetNode, keySet: string, delayMs: number): Promise<NodeResult> {
    await sleep(delayMs);
    try {
      // A node that died since it was listed has no workers to read: its result says so.
      const before = this.fleet.workerPids(node);
      // HAProxy nodes rotate through their runtime API, without a reload.
      const runtime = node.runtimeSocket !== undefined ? ['--runtime-socket', node.runtimeSocket] : [];
      const { summary } = await runApplier([...nodeApplierArgs(node), ...runtime], keySet);
      if (reloaded(summary)) await this.fleet.waitForReload(node, before);
      return resultFromSummary(node.name, summary);
    } catch (error) {
      return { node: node.name, ok: false, keys: [], error: error instanceof Error ? error.message : String(error) };
    }
  }

  async status(): Promise<NodeStatus[]> {
    const statuses = await Promise.all(
      this.fleet.runningNodes().map(async (node): Promise<NodeStatus> => {
        try {
          const { summary } = await runApplier([...nodeApplierArgs(node), '--status']);
          return statusFromSummary(node.name, summary);
        } catch (error) {
          return { node: node.name, keys: [], error: error instanceof Error ? error.message : String(error) };
        }
      }),
    );
    return [...statuses, ...this.stoppedNodes().map((node) => ({ node, keys: [], skipped: STOPPED }))];
  }
}
