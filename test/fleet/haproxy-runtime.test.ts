import { readFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { currentKey, revokeKeySet, type KeySet } from '../../src/core/keyset.js';
import type { ApplierRun } from '../../src/local/applier.js';
import { startLocalFleet, type FleetNode, type LocalFleet } from '../../src/local/fleet.js';
import { TLS_VERSIONS } from '../../src/tls/probe.js';
import { applyTo, expectNoMaterial, freshTicket, haproxyRuntime, lineage } from '../support/helpers.js';

/** Start time (clock ticks since boot) of a process: a reload or restart changes it. */
function startTime(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] as string;
}

/**
 * A runtime API socket in front of the real one that lets `show` through and drops the
 * connection on chosen `set` calls: a listener failing part-way through an update.
 */
async function faultySocket(path: string, realSocket: string, failSet: (count: number) => boolean): Promise<net.Server> {
  let sets = 0;
  const server = net.createServer((client) => {
    client.once('data', (command: Buffer) => {
      if (command.toString().startsWith('set ')) {
        sets += 1;
        if (failSet(sets)) {
          client.destroy();
          return;
        }
      }
      const upstream = net.createConnection(realSocket, () => upstream.write(command));
      upstream.pipe(client);
      upstream.once('error', () => client.destroy());
    });
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return server;
}

describe('the haproxy flavor through the runtime API: rotation without a reload', () => {
  let fleet: LocalFleet;
  let node: FleetNode;
  const sets = lineage(3, 1);
  const [gen1, gen2, gen3] = sets as [KeySet, KeySet, KeySet];
  const revoked = revokeKeySet(gen3);
  const outputs: string[] = [];

  beforeAll(async () => {
    fleet = await startLocalFleet({ nodeCount: 1, flavor: 'haproxy' });
    node = fleet.nodes[0] as FleetNode;
  });
  afterAll(async () => {
    await fleet?.stop();
    expectNoMaterial(outputs.join('\n'), [...sets, revoked]);
  });

  const apply = async (set: KeySet, socket = node.runtimeSocket as string, extra: string[] = []): Promise<ApplierRun> => {
    const run = await applyTo(fleet, node, set, ['--runtime-socket', socket, ...extra]);
    outputs.push(run.stdout, run.stderr);
    return run;
  };
  const processes = () => {
    const master = Number(readFileSync(node.pidFile, 'utf8'));
    return [master, ...fleet.workerPids(node)].map((pid) => `${pid}@${startTime(pid)}`);
  };
  const encryptsWith = async () => Promise.all(TLS_VERSIONS.map(async (version) => (await freshTicket(node, version)).keyName));

  it('rotates the running keys with no reload (same processes, same start times), and writes the file for the next start', async () => {
    expect((await apply(gen1, node.runtimeSocket, ['--allow-downgrade'])).summary).toMatchObject({ action: 'applied', via: 'runtime-api' });
    const before = processes();
    const run = await apply(gen2);
    expect(run.summary).toMatchObject({ action: 'applied', via: 'runtime-api', generation: 2 });
    expect(processes()).toEqual(before);
    expect(await encryptsWith()).toEqual([currentKey(gen2).name, currentKey(gen2).name]);
    await fleet.stopNode(node);
    await fleet.startNode(node);
    expect(await encryptsWith()).toEqual([currentKey(gen2).name, currentKey(gen2).name]);
    const again = await apply(gen2);
    expect(again.summary.action).toBe('unchanged');
  });

  it('repairs a node whose running keys drifted from its file, instead of calling it unchanged', async () => {
    await apply(gen2, node.runtimeSocket, ['--allow-downgrade']);
    const stray = revokeKeySet(gen3).keys[0]!.material;
    expect(await haproxyRuntime(node.runtimeSocket!, `set ssl tls-key ${node.includeFile} ${stray}`)).toMatch(/TLS ticket key updated/);
    expect((await encryptsWith())[0]).not.toBe(currentKey(gen2).name);
    const run = await apply(gen2);
    expect(run.summary).toMatchObject({ action: 'applied', via: 'runtime-api', generation: 2 });
    expect(await encryptsWith()).toEqual([currentKey(gen2).name, currentKey(gen2).name]);
  });

  it('a runtime API call failing part-way leaves the previous keys running and the previous file', async () => {
    await apply(gen2, node.runtimeSocket, ['--allow-downgrade']);
    const file = readFileSync(node.includeFile, 'utf8');
    const before = processes();
    // A revocation replaces all three running keys; the second `set` fails, the rest go through.
    const socket = join(fleet.baseDir, 'faulty.sock');
    const proxy = await faultySocket(socket, node.runtimeSocket as string, (count) => count === 2);
    try {
      const run = await apply(revoked, socket);
      expect(run.exitCode).toBe(6);
      expect(run.summary.error).toMatch(/runtime API update failed: .*the previous keys run again; the previous file was restored/);
    } finally {
      await new Promise((resolve) => proxy.close(resolve));
    }
    expect(readFileSync(node.includeFile, 'utf8')).toBe(file);
    expect(processes()).toEqual(before);
    expect(await encryptsWith()).toEqual([currentKey(gen2).name, currentKey(gen2).name]);
  });

  it('when the listener dies part-way, reloads the restored previous file', async () => {
    await apply(gen2, node.runtimeSocket, ['--allow-downgrade']);
    const file = readFileSync(node.includeFile, 'utf8');
    const socket = join(fleet.baseDir, 'dying.sock');
    const proxy = await faultySocket(socket, node.runtimeSocket as string, (count) => count >= 2);
    try {
      const run = await apply(revoked, socket);
      expect(run.exitCode).toBe(6);
      expect(run.summary.error).toMatch(/restoring the previous keys through the runtime API failed too.*the previous file was restored and reloaded/);
    } finally {
      await new Promise((resolve) => proxy.close(resolve));
    }
    expect(readFileSync(node.includeFile, 'utf8')).toBe(file);
    // The reload is asynchronous: wait until the node serves the previous set again.
    for (let attempt = 0; attempt < 50 && (await encryptsWith())[0] !== currentKey(gen2).name; attempt += 1) await new Promise((r) => setTimeout(r, 100));
    expect(await encryptsWith()).toEqual([currentKey(gen2).name, currentKey(gen2).name]);
  });

  it('refuses an unreachable runtime socket before touching anything', async () => {
    const file = readFileSync(node.includeFile, 'utf8');
    const run = await apply(gen3, join(fleet.baseDir, 'nothing-here.sock'));
    expect(run.exitCode).toBe(2);
    expect(run.summary.error).toMatch(/runtime API at .*nothing-here\.sock did not answer .*check --runtime-socket/);
    expect(readFileSync(node.includeFile, 'utf8')).toBe(file);
  });
});
