import type { NodeResult, NodeStatus } from './rotation.js';

/** The one JSON line the node applier prints on stdout, on every path, wherever it runs. */
export interface ApplierSummary {
  action: 'applied' | 'unchanged' | 'refused' | 'restored' | 'failed' | 'active' | 'damaged' | 'none' | 'help';
  flavor: string;
  exitCode: number;
  generation?: number;
  keys: string[];
  previousGeneration?: number;
  /** How an applied set took effect: a reload, HAProxy's runtime API (no reload), or the server's start (--before-start). */
  via?: 'reload' | 'runtime-api' | 'start';
  /** The key directory's filesystem type (tmpfs, ramfs, ext4…), and whether that keeps keys in memory only. */
  keyStorage?: string;
  keysInMemory?: boolean;
  /** Entries of the key directory the applier did not write, removed by this run. */
  removed?: string[];
  /** Why a run failed, or (with --status) why the active set is damaged. */
  error?: string;
}

/** Whether the server reloaded for this run (so that waiting for new workers makes sense). */
export function reloaded(summary: ApplierSummary): boolean {
  return summary.action === 'applied' && summary.via === 'reload';
}

/** A node's result from the summary of an apply run. */
export function resultFromSummary(node: string, summary: ApplierSummary): NodeResult {
  const ok = summary.exitCode === 0;
  return {
    node,
    ok,
    keys: summary.keys ?? [],
    action: summary.action,
    ...(summary.generation !== undefined ? { generation: summary.generation } : {}),
    ...(summary.keysInMemory !== undefined ? { keysInMemory: summary.keysInMemory } : {}),
    ...(ok ? {} : { error: summary.error ?? `the applier exited with code ${summary.exitCode}` }),
  };
}

/** A node's status from the summary of a `--status` run. */
export function statusFromSummary(node: string, summary: ApplierSummary): NodeStatus {
  if (summary.action === 'damaged') {
    return { node, keys: summary.keys ?? [], error: summary.error ?? 'its key files or include no longer match its recorded generation' };
  }
  return { node, keys: summary.keys ?? [], ...(summary.generation !== undefined ? { generation: summary.generation } : {}) };
}
