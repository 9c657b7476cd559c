import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, mkdirSync, readFileSync, readdirSync, statfsSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { shellQuote } from '../core/shell.js';
import { removeDirectory, stopProcess, trackDirectory, trackProcess } from './teardown.js';
import { PROJECT_ROOT } from '../project-root.js';
import { DEFAULT_FLAVOR, FLAVORS, type ServerFlavor } from '../flavors/index.js';
import { nodeOnboardingArgs, runOnboarding, type ManagedServer, type OnboardingSummary } from './applier.js';
import { FileSecretStore } from './file-secret-store.js';

export const LOOPBACK = '127.0.0.1';

/** One real TLS node of the local fleet, with everything the applier needs to drive it. */
export interface FleetNode extends ManagedServer {
  name: string;
  host: string;
  port: number;
  prefix: string;
  /** The master process's pid file. */
  pidFile: string;
  /** HAProxy's runtime API (admin level), a unix socket. */
  runtimeSocket?: string;
}

export interface LocalFleet {
  nodes: FleetNode[];
  /** The HAProxy in `mode tcp`, `balance roundrobin` in front of the nodes. */
  balancer: { host: string; port: number };
  /** Configs, logs and certificates: on persistent disk, so it must never hold key material. */
  baseDir: string;
  /** A directory on a memory filesystem (tmpfs) for the nodes' key directories and the local secret store. */
  memoryDir: string;
  /** The local Secrets Manager: the key set versions the rotation writes and every node start fetches AWSCURRENT from. */
  store: FileSecretStore;
  /** Where the store keeps its files: a start that cannot find it waits out its fetch, as one that cannot reach Secrets Manager would. */
  storeDir: string;
  /** Process ids of a node's workers (children of its master). */
  workerPids(node: FleetNode): number[];
  /** Stops one node's server, as a crash or an outage would. */
  stopNode(node: FleetNode): Promise<void>;
  /** Starts a stopped node again with its current configuration, after the boot-time fetch; resolves to what that fetch did. */
  startNode(node: FleetNode): Promise<OnboardingSummary>;
  /** Resolves once a reload that replaced `before` has finished: new workers up, old ones gone. */
  waitForReload(node: FleetNode, before: number[]): Promise<void>;
  /** The nodes whose server is running: the ones SSM would reach and the verifier would discover. */
  runningNodes(): FleetNode[];
  /** Starts one more node (onboarded, then started like a new instance: on the store's current keys) and adds it to the load balancer. */
  addNode(flavor?: ServerFlavor): Promise<FleetNode>;
  stop(): Promise<void>;
}

export interface FleetOptions {
  nodeCount: number;
  /**
   * The server that terminates TLS on the nodes, or one per node for a mixed fleet (which never
   * resumes across flavors: the verifier's tests need one). @default nginx
   */
  flavor?: ServerFlavor | readonly ServerFlavor[];
  /** The nodes' certificate key; a full handshake costs the server far more with RSA. @default ecdsa-p256 */
  certificate?: CertificateKind;
  /** How long a node's start waits for the store before it starts on what it has (the boot-time fetch's --fetch-wait). @default 10 */
  fetchWaitSeconds?: number;
}

export type CertificateKind = 'ecdsa-p256' | 'rsa-2048';

const CERTIFICATE_KEY_OPTIONS: Record<CertificateKind, string[]> = {
  'ecdsa-p256': ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1'],
  'rsa-2048': ['-newkey', 'rsa:2048'],
};

export function requireCommand(command: string, install: string): string {
  for (const dir of ['/usr/sbin', '/usr/bin', '/usr/local/sbin', '/usr/local/bin', '/sbin', '/bin', ...(process.env.PATH ?? '').split(':')]) {
    const candidate = join(dir, command);
    try {
      execFileSync(candidate, ['-v'], { stdio: 'ignore' });
      return candidate;
    } catch {
      // not here, or not runnable
    }
  }
  throw new Error(`${command} is not installed: ${install}`);
}

const TMPFS_MAGIC = 0x01021994;
const RAMFS_MAGIC = 0x858458f6;

/** A fresh directory on the machine's shared-memory tmpfs (/dev/shm): key files never touch a disk. */
export function makeMemoryDirectory(prefix: string): string {
  const root = '/dev/shm';
  if (!existsSync(root) || ![TMPFS_MAGIC, RAMFS_MAGIC].includes(statfsSync(root).type)) {
    throw new Error(`${root} is not a memory filesystem here: the local fleet keeps keys only in memory; mount one with \`mount -t tmpfs tmpfs ${root}\``);
  }
  return trackDirectory(mkdtempSync(join(root, prefix)));
}

const GET_CURRENT_KEY_SET = join(PROJECT_ROOT, 'dist', 'src', 'local', 'get-current-key-set.js');

/** The boot-time fetch of a local node: the file store's AWSCURRENT, as `aws secretsmanager get-secret-value` on AWS. */
function fetchCommand(storeDir: string): string {
  if (!existsSync(GET_CURRENT_KEY_SET)) throw new Error(`${GET_CURRENT_KEY_SET} is missing: run \`npm run build\` first`);
  return [process.execPath, GET_CURRENT_KEY_SET, storeDir].map(shellQuote).join(' ');
}

/**
 * What a node's start does before the server starts, the same script the systemd drop-in from
 * onboarding runs on AWS: the key directory, then the store's current key set with no reload,
 * or, when the store cannot be reached within the wait, what the node has.
 */
function prepareNodeStart(node: FleetNode, storeDir: string, fetchWaitSeconds: number): OnboardingSummary {
  const { exitCode, summary } = runOnboarding([...nodeOnboardingArgs(node), '--prestart', '--fetch-cmd', fetchCommand(storeDir), '--fetch-wait', String(fetchWaitSeconds)]);
  if (exitCode !== 0) throw new Error(`preparing ${node.name} to start failed: ${summary.error ?? `exit ${exitCode}`}`);
  return summary;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, LOOPBACK, () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/** Whether something accepts TCP connections on the loopback port. */
export function isListening(port: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const socket = net.connect(port, LOOPBACK);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

async function waitForPort(port: number, what: string, { child, recentStderr }: StartedProcess): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${what} exited with code ${child.exitCode} before listening: ${recentStderr()}`);
    if (await isListening(port)) return;
    await sleep(50);
  }
  throw new Error(`${what} did not listen on ${LOOPBACK}:${port} within 10 s: ${recentStderr()}`);
}

interface StartedProcess {
  child: ChildProcess;
  /** The last few kilobytes it wrote to stderr, for error messages. */
  recentStderr: () => string;
}

function startProcess(command: string, args: string[]): StartedProcess {
  // A process group of its own: stopping it stops its workers too, and a terminal's Ctrl-C
  // reaches only this process, which then stops it (teardown.ts).
  const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  trackProcess(child);
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  return { child, recentStderr: () => stderr };
}

function childPids(parent: number): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // Fields after the command name, which is in parentheses and may hold spaces.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === parent && fields[0] !== 'Z') pids.push(Number(entry));
    } catch {
      // the process ended while we looked
    }
  }
  return pids.sort((a, b) => a - b);
}

function makeCertificate(dir: string, kind: CertificateKind): { certificate: string; key: string } {
  const certificate = join(dir, 'fleet-cert.pem');
  const key = join(dir, 'fleet-key.pem');
  execFileSync(
    'openssl',
    ['req', '-x509', ...CERTIFICATE_KEY_OPTIONS[kind], '-nodes', '-subj', '/CN=fleet.local', '-days', '2', '-keyout', key, '-out', certificate],
    { stdio: 'pipe' },
  );
  return { certificate, key };
}

function haproxyConfig(port: number, nodes: FleetNode[]): string {
  return `global
  nbthread 1
  maxconn 2000
defaults
  mode tcp
  timeout connect 2s
  timeout client 30s
  timeout server 30s
frontend tls_in
  bind ${LOOPBACK}:${port}
  default_backend nodes
backend nodes
  balance roundrobin
  # Like a cloud load balancer's health checks: a stopped node leaves the rotation, and a
  # connection that finds it gone goes to another node instead of waiting for it.
  option redispatch
  retries 1
${nodes.map((node) => `  server ${node.name} ${node.host}:${node.port} check inter 100ms fall 1 rise 1`).join('\n')}
`;
}

/**
 * Starts `nodeCount` real TLS nodes (nginx, or HAProxy terminating TLS) that share one
 * certificate, each on its own random ticket keys (like a fleet before adoption), behind a
 * real HAProxy in TCP round-robin, all on 127.0.0.1.
 */
export async function startLocalFleet(options: FleetOptions): Promise<LocalFleet> {
  const flavors = Array.from({ length: options.nodeCount }, (_, index) => {
    const flavor = options.flavor ?? DEFAULT_FLAVOR;
    return typeof flavor === 'string' ? flavor : flavor[index];
  });
  if (flavors.some((flavor) => flavor === undefined)) throw new Error(`give one flavor per node: ${options.nodeCount} nodes`);
  const binaries = new Map([...new Set(flavors as ServerFlavor[])].map((flavor) => [flavor, requireCommand(FLAVORS[flavor].local.binary, FLAVORS[flavor].local.install)]));
  // The load balancer in front of the nodes.
  const haproxy = requireCommand('haproxy', 'install it with `apt-get install haproxy`');
  const baseDir = trackDirectory(mkdtempSync(join(tmpdir(), 'ticket-fleet-')));
  const memoryDir = makeMemoryDirectory('ticket-fleet-keys-');
  const storeDir = join(memoryDir, 'secret');
  const store = new FileSecretStore(storeDir);
  const fetchWaitSeconds = options.fetchWaitSeconds ?? 10;
  const nodeProcesses = new Map<string, ChildProcess>();
  const binaryOf = (flavor: ServerFlavor): string => binaries.get(flavor) ?? requireCommand(FLAVORS[flavor].local.binary, FLAVORS[flavor].local.install);
  let balancerProcess: ChildProcess | undefined;
  const stop = async (): Promise<void> => {
    const all = [...nodeProcesses.values(), ...(balancerProcess ? [balancerProcess] : [])];
    await Promise.all(all.map((child) => stopProcess(child, 'SIGTERM')));
    removeDirectory(baseDir);
    removeDirectory(memoryDir);
  };
  const startNode = async (node: FleetNode): Promise<OnboardingSummary> => {
    const prepared = prepareNodeStart(node, storeDir, fetchWaitSeconds);
    const local = FLAVORS[node.flavor].local;
    const started = startProcess(binaryOf(node.flavor), local.startArgs({ ...node, binary: binaryOf(node.flavor) }));
    nodeProcesses.set(node.name, started.child);
    await waitForPort(node.port, `${node.flavor} ${node.name}`, started);
    return prepared;
  };
  try {
    const { certificate, key } = makeCertificate(baseDir, options.certificate ?? 'ecdsa-p256');
    const nodes: FleetNode[] = [];
    const certificateWithKey = join(baseDir, 'fleet-cert-and-key.pem');
    writeFileSync(certificateWithKey, readFileSync(certificate, 'utf8') + readFileSync(key, 'utf8'), { mode: 0o600 });
    const createNode = (index: number, flavor: ServerFlavor): FleetNode => {
      const prefix = join(baseDir, `node${index}`);
      for (const dir of ['logs', 'tmp', 'conf']) mkdirSync(join(prefix, dir), { recursive: true });
      const name = `node${index}`;
      const keyDir = join(memoryDir, name);
      const local = FLAVORS[flavor].local;
      const configFile = join(prefix, 'conf', local.configFileName);
      const place = { name, host: LOOPBACK, port: 0, prefix, configFile };
      return { ...place, flavor, keyDir, includeFile: join(keyDir, FLAVORS[flavor].includeFileName), ...local.commands({ ...place, binary: binaryOf(flavor) }) };
    };
    const launchNode = async (index: number, flavor: ServerFlavor): Promise<FleetNode> => {
      const node = createNode(index, flavor);
      node.port = await freePort();
      writeFileSync(node.configFile, FLAVORS[flavor].local.config({ ...node, binary: binaryOf(flavor) }, { certificate, key, certificateWithKey }));
      // The config as an operator wrote it; onboarding makes it load the managed keys.
      const onboarding = runOnboarding(nodeOnboardingArgs(node));
      if (onboarding.exitCode !== 0) throw new Error(`onboarding ${node.name} failed: ${onboarding.summary.error ?? `exit ${onboarding.exitCode}`}`);
      await startNode(node);
      nodes.push(node);
      return node;
    };
    for (let index = 1; index <= options.nodeCount; index += 1) await launchNode(index, flavors[index - 1] as ServerFlavor);
    const balancerPort = await freePort();
    const balancerConfig = join(baseDir, 'haproxy.cfg');
    const balancerPidFile = join(baseDir, 'haproxy.pid');
    writeFileSync(balancerConfig, haproxyConfig(balancerPort, nodes));
    const balancer = startProcess(haproxy, ['-W', '-db', '-f', balancerConfig, '-p', balancerPidFile]);
    balancerProcess = balancer.child;
    await waitForPort(balancerPort, 'haproxy', balancer);

    // HAProxy rewrites its pid file when it reloads: a moment without one is a reload going on, not an error.
    const workersOf = (pidFile: string): number[] => {
      let text: string;
      try {
        text = readFileSync(pidFile, 'utf8');
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
        throw error;
      }
      const pid = Number(text.trim());
      return pid > 0 ? childPids(pid) : [];
    };
    const workerPids = (node: FleetNode): number[] => workersOf(node.pidFile);
    const waitForNewWorkers = async (what: string, pidFile: string, before: number[]): Promise<void> => {
      const deadline = Date.now() + 10_000;
      while (Date.now() < deadline) {
        const now = workersOf(pidFile);
        if (now.length > 0 && now.every((pid) => !before.includes(pid))) return;
        await sleep(20);
      }
      throw new Error(`${what} did not finish reloading within 10 s (workers ${workersOf(pidFile).join(',')})`);
    };
    return {
      nodes,
      balancer: { host: LOOPBACK, port: balancerPort },
      baseDir,
      memoryDir,
      store,
      storeDir,
      workerPids,
      async stopNode(node) {
        const child = nodeProcesses.get(node.name);
        if (child !== undefined) await stopProcess(child, 'SIGTERM');
        nodeProcesses.delete(node.name);
      },
      startNode,
      runningNodes: () => nodes.filter((node) => nodeProcesses.get(node.name)?.exitCode === null),
      waitForReload: (node, before) => waitForNewWorkers(`${node.flavor} ${node.name}`, node.pidFile, before),
      async addNode(flavor = flavors[0] as ServerFlavor) {
        const node = await launchNode(nodes.length + 1, flavor);
        writeFileSync(balancerConfig, haproxyConfig(balancerPort, nodes));
        const before = workersOf(balancerPidFile);
        process.kill(Number(readFileSync(balancerPidFile, 'utf8').trim()), 'SIGUSR2');
        await waitForNewWorkers('the load balancer', balancerPidFile, before);
        return node;
      },
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
