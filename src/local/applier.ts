import { spawn, spawnSync } from 'node:child_process';
import { APPLIER_PATH, ONBOARDING_PATH } from '../project-paths.js';
import type { ApplierSummary } from '../core/applier-summary.js';
import type { ServerFlavor } from '../flavors/index.js';
import { trackProcess } from './teardown.js';

export interface ApplierRun {
  exitCode: number;
  summary: ApplierSummary;
  stdout: string;
  stderr: string;
}

/** What the node scripts need to know of a server: its flavor, its config, where its keys go and its commands. */
export interface ManagedServer {
  flavor: ServerFlavor;
  configFile: string;
  /** On a memory filesystem, like /run/tls-ticket-keys on a real node: a restart may find it empty. */
  keyDir: string;
  /** nginx: the include with the ssl_session_ticket_key lines; HAProxy: the tls-ticket-keys file. */
  includeFile: string;
  testCommand: string;
  /** Prints the config the server loads (nginx -T; HAProxy: its config file). */
  configDumpCommand: string;
  reloadCommand: string;
}

export function nodeApplierArgs(node: ManagedServer): string[] {
  return ['--flavor', node.flavor, '--key-dir', node.keyDir, '--include', node.includeFile, '--test-cmd', node.testCommand, '--config-dump-cmd', node.configDumpCommand, '--reload-cmd', node.reloadCommand];
}

/**
 * Root's standard PATH first, as SSM Run Command gives it on a node: the applier then uses the
 * system python3 and nginx rather than a developer's shims.
 */
export const NODE_PATH = `/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:${process.env.PATH ?? ''}`;

export function runApplier(args: string[], input?: string): Promise<ApplierRun> {
  return new Promise((resolve, reject) => {
    // Tracked like a server: the local mode, ended, stops an apply in flight before it removes the key directory.
    const child = spawn('bash', [APPLIER_PATH, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, PATH: NODE_PATH }, detached: true });
    trackProcess(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('error', reject);
    child.once('close', (code) => {
      const lines = stdout.split('\n').filter((line) => line !== '');
      if (lines.length !== 1) {
        reject(new Error(`the applier printed ${lines.length} lines on stdout instead of one summary (exit ${code}): ${stderr.trim()}`));
        return;
      }
      resolve({ exitCode: code ?? -1, summary: JSON.parse(lines[0] as string) as ApplierSummary, stdout, stderr });
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(input ?? '');
  });
}

export interface OnboardingSummary {
  action: 'onboarded' | 'unchanged' | 'prepared' | 'refused' | 'restored' | 'failed' | 'help';
  exitCode: number;
  config: string;
  changed: number;
  keyDir: string;
  keyStorage?: string;
  keysInMemory?: boolean;
  /** A prestart's keys: the fleet's current set from the store, the set its key directory kept, or keys of its own. */
  keySource?: 'store' | 'kept' | 'own';
  generation?: number;
  /** Why a prestart did not start on the store's current set. */
  fetchError?: string;
  error?: string;
}

/** The onboarding options for a local node; systemd's directories are not the local mode's to touch. */
export function nodeOnboardingArgs(node: ManagedServer): string[] {
  return ['--flavor', node.flavor, '--config', node.configFile, '--key-dir', node.keyDir, '--include', node.includeFile, '--test-cmd', node.testCommand, '--config-dump-cmd', node.configDumpCommand, '--tmpfiles-dir', 'none', '--systemd-dir', 'none'];
}

/** Runs the onboarding script (the one a node runs once on AWS) and returns its summary line. */
export function runOnboarding(args: string[]): { exitCode: number; summary: OnboardingSummary; stderr: string } {
  const run = spawnSync('bash', [ONBOARDING_PATH, ...args], { encoding: 'utf8', env: { ...process.env, PATH: NODE_PATH } });
  const lines = run.stdout.split('\n').filter((line) => line !== '');
  if (lines.length !== 1) throw new Error(`the onboarding script printed ${lines.length} lines on stdout instead of one summary (exit ${run.status}): ${run.stderr.trim()}`);
  return { exitCode: run.status ?? -1, summary: JSON.parse(lines[0] as string) as OnboardingSummary, stderr: run.stderr };
}
