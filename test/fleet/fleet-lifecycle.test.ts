import { existsSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { startLocalFleet } from '../../src/local/fleet.js';

const accepts = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });

describe('local fleet lifecycle', () => {
  it('listens on 127.0.0.1 only, and stop() ends every process it started and removes its files', async () => {
    const fleet = await startLocalFleet({ nodeCount: 2 });
    let masters: number[] = [];
    let workers: number[] = [];
    try {
      masters = fleet.nodes.map((node) => Number(readFileSync(join(node.prefix, 'nginx.pid'), 'utf8')));
      workers = fleet.nodes.flatMap((node) => fleet.workerPids(node));
      expect(workers.length).toBeGreaterThanOrEqual(2);
      expect(fleet.balancer.host).toBe('127.0.0.1');
      for (const node of fleet.nodes) expect(node.host).toBe('127.0.0.1');
      expect(await accepts(fleet.balancer.port)).toBe(true);
    } finally {
      await fleet.stop();
    }
    for (const pid of [...masters, ...workers]) expect(existsSync(`/proc/${pid}`), `process ${pid} still running`).toBe(false);
    for (const port of [fleet.balancer.port, ...fleet.nodes.map((node) => node.port)]) expect(await accepts(port)).toBe(false);
    expect(existsSync(fleet.baseDir)).toBe(false);
  });
});
