import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, isListening, LOOPBACK, makeMemoryDirectory } from '../../src/local/fleet.js';
import { removeDirectory, stopProcess, trackDirectory, trackProcess } from '../../src/local/teardown.js';
import { PROJECT_ROOT } from '../../src/project-root.js';
import { handshake, TLS_VERSIONS } from '../../src/tls/probe.js';

/**
 * The integration fleet's nodes (test/integ/node/), on real nginx here: each node derives the
 * fleet's one certificate from the seed on its own, and the server block it serves resumes a
 * peer's tickets only because the certificates are the same bytes.
 */
const NODE_DIR = join(PROJECT_ROOT, 'test', 'integ', 'node');
const SHARED_CERTIFICATE = join(NODE_DIR, 'shared-certificate.sh');

function deriveCertificate(seed: string, dir: string): { status: number | null; stderr: string } {
  const result = spawnSync('bash', [SHARED_CERTIFICATE, dir], { input: seed, encoding: 'utf8' });
  return { status: result.status, stderr: result.stderr };
}

/** The integration node's server block as the user data installs it, on a loopback port, its certificate in `tlsDir`, and the fleet's ticket key. */
function nodeConfig(prefix: string, port: number, tlsDir: string, ticketKeyFile: string): string {
  const server = readFileSync(join(NODE_DIR, 'ticket-keys-integ.conf'), 'utf8')
    .replace('listen 443 ssl;', `listen ${LOOPBACK}:${port} ssl;\n    ssl_session_ticket_key ${ticketKeyFile};`)
    .replaceAll('/etc/nginx/tls/', `${tlsDir}/`);
  const temp = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((name) => `  ${name}_temp_path ${prefix}/${name};`).join('\n');
  return `daemon off;
worker_processes 1;
error_log ${prefix}/error.log notice;
pid ${prefix}/nginx.pid;
events { worker_connections 64; }
http {
  access_log off;
${temp}
${server}
}
`;
}

async function listening(port: number, child: ChildProcess): Promise<void> {
  for (let attempt = 0; attempt < 200; attempt++) {
    if (child.exitCode !== null) throw new Error(`nginx exited with code ${child.exitCode}`);
    if (await isListening(port)) return;
    await sleep(50);
  }
  throw new Error(`nginx did not listen on ${port}`);
}

describe('the integration nodes: one certificate from one seed, on real nginx', () => {
  const seed = randomBytes(32).toString('hex');
  let workDir: string;
  let keyDir: string;
  const servers: ChildProcess[] = [];
  const ports: Record<'a' | 'b' | 'other', number> = { a: 0, b: 0, other: 0 };

  beforeAll(async () => {
    workDir = trackDirectory(mkdtempSync(join(tmpdir(), 'integ-node-')));
    // The certificates' keys and the ticket key: in memory, removed after.
    keyDir = makeMemoryDirectory('integ-node-');
    const ticketKeyFile = join(keyDir, 'ticket.key');
    writeFileSync(ticketKeyFile, randomBytes(80), { mode: 0o600 });
    for (const [node, nodeSeed] of [['a', seed], ['b', seed], ['other', randomBytes(32).toString('hex')]] as const) {
      const tlsDir = join(keyDir, node);
      expect(deriveCertificate(nodeSeed, tlsDir).status).toBe(0);
      const prefix = join(workDir, node);
      mkdirSync(prefix);
      ports[node] = await freePort();
      const config = join(prefix, 'nginx.conf');
      writeFileSync(config, nodeConfig(prefix, ports[node], tlsDir, ticketKeyFile));
      execFileSync('nginx', ['-t', '-q', '-p', prefix, '-c', config], { stdio: 'pipe' });
      const child = spawn('nginx', ['-p', prefix, '-c', config], { stdio: 'ignore', detached: true });
      trackProcess(child);
      servers.push(child);
      await listening(ports[node], child);
    }
  });

  afterAll(async () => {
    await Promise.all(servers.map((server) => stopProcess(server)));
    removeDirectory(keyDir);
    removeDirectory(workDir);
  });

  it('derives the same certificate and key from the same seed, at another time, and others from another seed', async () => {
    const first = join(keyDir, 'a');
    const again = join(keyDir, 'again');
    await sleep(1100);
    expect(deriveCertificate(seed, again).status).toBe(0);
    for (const file of ['cert.pem', 'key.pem']) expect(readFileSync(join(again, file))).toEqual(readFileSync(join(first, file)));
    expect(readFileSync(join(keyDir, 'other', 'cert.pem'))).not.toEqual(readFileSync(join(first, 'cert.pem')));
    expect(statSync(join(first, 'key.pem')).mode & 0o077).toBe(0);
  });

  it('refuses an empty seed, writing nothing', () => {
    const dir = join(keyDir, 'empty');
    const { status, stderr } = deriveCertificate('', dir);
    expect(status).toBe(2);
    expect(stderr).toContain('the seed on standard input is empty');
    expect(existsSync(dir)).toBe(false);
  });

  for (const version of TLS_VERSIONS) {
    it(`serves one certificate on both nodes, and a ticket from one resumes on the other (${version})`, async () => {
      const a = { host: LOOPBACK, port: ports.a };
      const b = { host: LOOPBACK, port: ports.b };
      const first = await handshake(a, { version });
      expect(first.resumed).toBe(false);
      expect(first.session).toBeDefined();
      expect((await handshake(b, { version })).certificateFingerprint).toBe(first.certificateFingerprint);
      expect((await handshake(b, { version, session: first.session as Buffer })).resumed).toBe(true);
    });

    it(`does not resume on a node whose certificate came from another seed, though it holds the same ticket key (${version})`, async () => {
      const first = await handshake({ host: LOOPBACK, port: ports.a }, { version });
      expect(first.session).toBeDefined();
      const other = { host: LOOPBACK, port: ports.other };
      const own = await handshake(other, { version });
      expect(own.certificateFingerprint).not.toBe(first.certificateFingerprint);
      // It resumes its own tickets: what it refuses is the other certificate's.
      expect((await handshake(other, { version, session: own.session as Buffer })).resumed).toBe(true);
      expect((await handshake(other, { version, session: first.session as Buffer })).resumed).toBe(false);
    });
  }
});
