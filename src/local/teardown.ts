import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * What the local mode must undo however its process ends: the servers it started (each in a
 * process group of its own, so that its workers go with it) and the directories it wrote, key
 * material and the certificate's private key among them. Whoever starts or writes one stops or
 * removes it; what is left when the process exits is killed and removed then.
 */
const processes = new Set<ChildProcess>();
const directories = new Set<string>();
let lastResortInstalled = false;

function installLastResort(): void {
  if (lastResortInstalled) return;
  lastResortInstalled = true;
  // Synchronous, as an exit handler must be: no time to let a server stop gracefully.
  process.on('exit', () => {
    for (const child of processes) signalGroup(child, 'SIGKILL');
    for (const path of directories) rmSync(path, { recursive: true, force: true });
  });
}

function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // the group is gone already
  }
}

/** A server just started (with `detached: true`, which makes it a process group's leader). */
export function trackProcess(child: ChildProcess): void {
  installLastResort();
  processes.add(child);
  child.once('exit', () => processes.delete(child));
}

export function trackDirectory(path: string): string {
  installLastResort();
  directories.add(path);
  return path;
}

export function removeDirectory(path: string): void {
  rmSync(path, { recursive: true, force: true });
  directories.delete(path);
}

/** Stops a server and its workers: `signal` to its group, then SIGKILL after 5 s. */
export async function stopProcess(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) {
    signalGroup(child, 'SIGKILL');
    return;
  }
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  signalGroup(child, signal);
  const timeout = sleep(5000).then(() => 'timeout' as const);
  if ((await Promise.race([exited, timeout])) === 'timeout') {
    signalGroup(child, 'SIGKILL');
    await exited;
  }
  // Workers a master left behind.
  signalGroup(child, 'SIGKILL');
}

/** Stops every server still running and removes every directory still there. */
export async function undoEverything(): Promise<void> {
  await Promise.all([...processes].map((child) => stopProcess(child)));
  for (const path of [...directories]) removeDirectory(path);
}

const SIGNAL_NUMBERS = { SIGHUP: 1, SIGINT: 2, SIGPIPE: 13, SIGTERM: 15 } as const;

/**
 * For a command's own process (the CLI): on SIGINT, SIGTERM or SIGHUP, on a standard output
 * closed by its reader (EPIPE, as `| head` does) or on an uncaught error, undo everything, then
 * exit with the conventional code: 128 plus the signal's number (SIGPIPE's for EPIPE), 1 for an
 * error. A second signal while that runs exits at once, killing what is left.
 */
export function undoOnAnyEnd(): void {
  let ending = false;
  const end = (code: number, message?: string): void => {
    if (ending) return;
    ending = true;
    if (message !== undefined) process.stderr.write(message);
    void undoEverything().finally(() => process.exit(code));
  };
  // While the undo runs, what it stops may make the command fail: that is not news.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => (ending ? process.exit(128 + SIGNAL_NUMBERS[signal]) : end(128 + SIGNAL_NUMBERS[signal])));
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') end(128 + SIGNAL_NUMBERS.SIGPIPE);
    else end(1, `ticket-keys: cannot write to standard output: ${error.message}\n`);
  });
  const failed = (error: unknown): void => end(1, `ticket-keys: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.on('uncaughtException', failed);
  process.on('unhandledRejection', failed);
}
