// The local mode ended by a signal, by a reader that goes away, or by an uncaught error: each
// time, on a real demo, no process it started and no file it wrote may be left.
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../../src/project-root.js';

const CLI = join(PROJECT_ROOT, 'dist', 'src', 'cli.js');

/** The local mode's directories: its servers' files in the temporary directory, its keys on /dev/shm. */
function localModeDirectories(): string[] {
  return [
    ...readdirSync('/dev/shm').map((name) => join('/dev/shm', name)),
    ...readdirSync(tmpdir()).map((name) => join(tmpdir(), name)),
  ].filter((path) => /\/ticket-fleet-/.test(path));
}

/** Every live process whose command line names one of `directories` (the servers of that fleet), with all its descendants (their workers). */
function processesUnder(directories: string[]): Map<number, string> {
  const ps = spawnSync('ps', ['-eo', 'pid=,ppid=,stat=,args='], { encoding: 'utf8' });
  const rows = ps.stdout
    .split('\n')
    .map((line) => /^\s*(\d+)\s+(\d+)\s+(\S+)\s+(.*)$/.exec(line))
    .filter((match) => match !== null)
    .map(([, pid, ppid, stat, args]) => ({ pid: Number(pid), ppid: Number(ppid), args: args as string, zombie: (stat as string).startsWith('Z') }));
  const found = new Map(rows.filter((row) => !row.zombie && directories.some((directory) => row.args.includes(directory))).map((row) => [row.pid, row.args]));
  for (let grew = true; grew; ) {
    grew = false;
    for (const row of rows) {
      if (!row.zombie && found.has(row.ppid) && !found.has(row.pid)) {
        found.set(row.pid, row.args);
        grew = true;
      }
    }
  }
  return found;
}

/** Which of `pids` still run (not a zombie), as `ps` shows them. */
function stillRunning(pids: Map<number, string>): string[] {
  const ps = spawnSync('ps', ['-eo', 'pid=,stat=,args='], { encoding: 'utf8' });
  return ps.stdout.split('\n').filter((line) => {
    const match = /^\s*(\d+)\s+(\S+)/.exec(line);
    return match !== null && pids.has(Number(match[1])) && !(match[2] as string).startsWith('Z');
  });
}

interface Ended {
  code: number | null;
  stderr: string;
  /** What it left of its own: directories, then processes. */
  left: string[];
}

/** Runs `command` (a demo) until its output shows `ready`, then `end`s it, and reports what it left. */
async function runAndEnd(command: string[], ready: RegExp, end: (pid: number) => void): Promise<Ended> {
  const before = new Set(localModeDirectories());
  const child = spawn(command[0] as string, command.slice(1), { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`not ready within 60 s: ${stdout} ${stderr}`)), 60_000);
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      if (ready.test(stdout)) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  const own = localModeDirectories().filter((path) => !before.has(path));
  expect(own.length, 'the demo made its directories').toBeGreaterThanOrEqual(2);
  const servers = processesUnder(own);
  // Two nodes and the load balancer, each a master with at least one worker.
  expect(servers.size, 'the demo started its servers and their workers').toBeGreaterThanOrEqual(6);
  end(child.pid as number);
  const code = await exited;
  return { code, stderr, left: [...own.filter((path) => localModeDirectories().includes(path)), ...stillRunning(servers)] };
}

const demo = [process.execPath, CLI, 'demo', '--nodes', '2', '--rotations', '50'];
const READY = /Clients reconnect/;

describe('the local mode, interrupted, leaves nothing behind', () => {
  it('Ctrl-C (SIGINT to the whole process group): exit 130', async () => {
    const ended = await runAndEnd(demo, READY, (pid) => process.kill(-pid, 'SIGINT'));
    expect(ended).toMatchObject({ code: 130, left: [] });
  });

  for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]] as const) {
    it(`${signal} to the demo's process alone: exit ${code}`, async () => {
      const ended = await runAndEnd(demo, READY, (pid) => process.kill(pid, signal));
      expect(ended).toMatchObject({ code, left: [] });
    });
  }

  it('a reader that goes away (`demo | head -2`, EPIPE): exit 141, as SIGPIPE would', async () => {
    const piped = ['/bin/bash', '-c', `${demo.map((word) => `'${word}'`).join(' ')} | head -2; exit "\${PIPESTATUS[0]}"`];
    // head prints the first two lines, then leaves; the demo's next line meets the closed pipe.
    const ended = await runAndEnd(piped, /Policy:/, () => undefined);
    expect(ended).toMatchObject({ code: 141, left: [] });
  });

  it('an uncaught error: exit 1, saying what it was', async () => {
    const script = `
      import { startLocalFleet } from ${JSON.stringify(join(PROJECT_ROOT, 'dist', 'src', 'local', 'fleet.js'))};
      import { undoOnAnyEnd } from ${JSON.stringify(join(PROJECT_ROOT, 'dist', 'src', 'local', 'teardown.js'))};
      undoOnAnyEnd();
      await startLocalFleet({ nodeCount: 2 });
      console.log('started');
      setTimeout(() => { throw new Error('something nobody caught'); }, 200);
    `;
    const ended = await runAndEnd([process.execPath, '--input-type=module', '-e', script], /started/, () => undefined);
    expect(ended).toMatchObject({ code: 1, left: [] });
    expect(ended.stderr).toMatch(/^ticket-keys: Error: something nobody caught/);
  });
});
