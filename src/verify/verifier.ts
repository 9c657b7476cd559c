import type { CapturedTicketsMust } from '../core/rotation.js';
import { ticketsSurviveRotation } from '../core/policy.js';
import { FLAVORS, isServerFlavor } from '../flavors/index.js';
import { seededRandom, shuffled } from '../core/seeded-random.js';
import { handshake, TLS_VERSIONS, type Endpoint, type HandshakeResult, type TlsVersion } from '../tls/probe.js';

/** A TLS node to verify: where to connect and what to call it in the report. */
export interface VerifyNode extends Endpoint {
  name: string;
}

/** A session a node issued, kept to be offered again later (e.g. after a rotation). Never log it. */
export interface CapturedTicket {
  node: string;
  version: TlsVersion;
  session: Buffer;
}

export interface VerifyOptions {
  /** The key every node must encrypt with; when unset, the key most nodes use is expected. */
  expectedKey?: string;
  /**
   * A key nodes may encrypt with instead: the pending set's current key while a rotation rolls
   * out, since nodes one generation apart resume each other's tickets.
   */
  pendingKey?: string;
  /**
   * Nodes the commander skipped: they may still encrypt with the key before (one generation
   * behind), or not answer at all (a stopped instance serves no client).
   */
  lagging?: { nodes: string[]; key: string };
  versions?: readonly TlsVersion[];
  /** Per-connection timeout. */
  timeoutMs?: number;
  /** Connections in flight at once. */
  concurrency?: number;
  /** Other nodes each node's ticket is tried on; every other node when unset and the fleet is small. */
  peersPerNode?: number;
  /** Seed of the deterministic choice of peers when sampling. */
  seed?: number;
  /** Tickets captured before a rotation, which must resume on every node after it. */
  ticketsBefore?: CapturedTicket[];
  /** Tickets captured before a revocation, which must resume on no node after it. */
  revokedTickets?: CapturedTicket[];
  /**
   * Tickets captured before a rotation on a server that holds one key (Apache): their key is
   * gone, so each must fall back to a full handshake. The cost of that server, expected.
   */
  retiredTickets?: CapturedTicket[];
}

/** The option that carries tickets captured before a version, by what they must do after it. */
export function capturedTicketsOption(tickets: CapturedTicket[], must: CapturedTicketsMust): Pick<VerifyOptions, 'ticketsBefore' | 'revokedTickets' | 'retiredTickets'> {
  if (must === 'be refused') return { revokedTickets: tickets };
  if (must === 'fall back to a full handshake') return { retiredTickets: tickets };
  return { ticketsBefore: tickets };
}

export type FailureKind =
  | 'unreachable'
  | 'handshake error'
  | 'no ticket'
  | 'wrong key'
  | 'not resumed'
  | 'different certificate'
  | 'different server flavor'
  | 'continuity'
  | 'revoked key accepted'
  | 'retired key accepted';

export interface Failure {
  kind: FailureKind;
  /** The node, or "issuer -> resumer" for a pair. */
  subject: string;
  version?: TlsVersion;
  detail: string;
}

export interface NodeReport {
  node: string;
  address: string;
  reachable: boolean;
  /** Name of the key the node's tickets are encrypted with, per TLS version. */
  keys: Partial<Record<TlsVersion, string>>;
  /** The server software its HTTP response shows (a flavor's name, or its Server header's product), when it shows one. */
  serverSoftware: string | undefined;
  onExpectedKey: boolean;
}

export interface VerificationReport {
  ok: boolean;
  expectedKey: string | undefined;
  expectedKeyInferred: boolean;
  nodes: NodeReport[];
  pairs: { tried: number; resumed: number };
  /** Pairs not tried: two nodes of a one-key server (Apache) on different keys, each acceptable, cannot resume each other's tickets. */
  pairsAcrossKeys: number;
  continuity: { tried: number; resumed: number };
  /** Tickets from before a revocation offered to the nodes, and how many were refused (all must be). */
  revocation: { tried: number; refused: number };
  /** Tickets from before a rotation on a one-key server, and how many fell back to a full handshake (all must). */
  retired: { tried: number; fellBack: number };
  peersPerNode: number;
  failures: Failure[];
  durationMs: number;
}

/** Full mesh up to this many nodes; above it each node's ticket goes to a sample of peers. */
export const FULL_MESH_MAX_NODES = 12;
export const DEFAULT_SAMPLED_PEERS = 6;

/** Runs tasks with at most `limit` in flight. */
async function pool<T>(tasks: (() => Promise<T>)[], limit: number): Promise<T[]> {
  const results: T[] = new Array(tasks.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < tasks.length) {
      const index = next++;
      results[index] = await (tasks[index] as () => Promise<T>)();
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, worker));
  return results;
}

function nameSeed(name: string, seed: number): number {
  let hash = seed;
  for (const char of name) hash = Math.imul(hash ^ char.charCodeAt(0), 16777619);
  return hash;
}

/**
 * Each node's peers, the nodes its ticket is tried on: `count` of the others (all of them when
 * there are no more), chosen as a circulant. Around a circle in an order the seed draws, each
 * node's peers are the `count` nodes after it, so every node is also a resumer exactly `count`
 * times, which a random sample only makes likely.
 */
export function choosePeers(names: readonly string[], count: number, seed: number): Map<string, string[]> {
  const circle = shuffled([...names].sort(), seededRandom(seed));
  const k = Math.max(0, Math.min(count, circle.length - 1));
  return new Map(circle.map((name, index) => [name, Array.from({ length: k }, (_, step) => circle[(index + step + 1) % circle.length] as string)]));
}

function describeError(error: unknown): { kind: 'unreachable' | 'handshake error'; detail: string } {
  const code = (error as NodeJS.ErrnoException).code;
  const message = error instanceof Error ? error.message : String(error);
  if (code === 'ECONNREFUSED' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || code === 'ETIMEDOUT' || /timed out/.test(message)) {
    return { kind: 'unreachable', detail: code ?? message };
  }
  return { kind: 'handshake error', detail: message };
}

const address = (node: Endpoint): string => `${node.host}:${node.port}`;

/** Per connection, and connections in flight at once. */
const DEFAULT_TIMEOUT_MS = 3000;
const DEFAULT_CONCURRENCY = 16;

/** How many nodes tickets are captured from before a rotation: enough to prove continuity, few enough that offering each to every node stays linear in the fleet's size. */
export const DEFAULT_CAPTURED_NODES = 8;

/** The nodes to capture tickets from before version `versionId`: all of them, or a sample seeded by the version. */
export function captureSources(nodes: VerifyNode[], versionId: string, count = DEFAULT_CAPTURED_NODES): VerifyNode[] {
  if (count >= nodes.length) return nodes;
  const chosen = new Set(shuffled(nodes.map((node) => node.name), seededRandom(nameSeed(versionId, 1))).slice(0, count));
  return nodes.filter((node) => chosen.has(node.name));
}

/** The key each node encrypts new tickets with (one TLS 1.3 handshake each); null when it does not answer. */
export async function observeKeys(nodes: VerifyNode[], options: Pick<VerifyOptions, 'timeoutMs' | 'concurrency'> = {}): Promise<Record<string, string | null>> {
  const observed = await pool(
    nodes.map((node) => async (): Promise<[string, string | null]> => {
      try {
        return [node.name, (await handshake(node, { version: 'TLSv1.3', timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS })).ticketKeyName ?? null];
      } catch {
        return [node.name, null];
      }
    }),
    options.concurrency ?? DEFAULT_CONCURRENCY,
  );
  return Object.fromEntries(observed);
}

/** Full handshakes with every node: the tickets to offer after a rotation. */
export async function captureTickets(nodes: VerifyNode[], options: Pick<VerifyOptions, 'versions' | 'timeoutMs' | 'concurrency'> = {}): Promise<CapturedTicket[]> {
  const versions = options.versions ?? TLS_VERSIONS;
  const tasks = nodes.flatMap((node) =>
    versions.map((version) => async (): Promise<CapturedTicket | undefined> => {
      try {
        const result = await handshake(node, { version, timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS });
        return result.session ? { node: node.name, version, session: result.session } : undefined;
      } catch {
        return undefined;
      }
    }),
  );
  return (await pool(tasks, options.concurrency ?? DEFAULT_CONCURRENCY)).filter((ticket): ticket is CapturedTicket => ticket !== undefined);
}

/**
 * Proves on the wire that a fleet shares its ticket keys: every node encrypts with the
 * expected key, every node's ticket resumes on the other nodes (or a seeded sample of them),
 * and tickets from before a rotation resume on every node after it.
 */
export async function verifyFleet(nodes: VerifyNode[], options: VerifyOptions = {}): Promise<VerificationReport> {
  const started = Date.now();
  const versions = options.versions ?? TLS_VERSIONS;
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const concurrency = options.concurrency ?? DEFAULT_CONCURRENCY;
  const names = nodes.map((node) => node.name);
  if (new Set(names).size !== names.length) throw new Error('node names must be unique');
  const failures: Failure[] = [];

  // 1. A full handshake with every node in every version.
  type Fresh = { node: VerifyNode; version: TlsVersion; result?: HandshakeResult };
  const fresh: Fresh[] = await pool(
    nodes.flatMap((node) =>
      versions.map((version) => async (): Promise<Fresh> => {
        try {
          return { node, version, result: await handshake(node, { version, timeoutMs }) };
        } catch (error) {
          const { kind, detail } = describeError(error);
          const stopped = kind === 'unreachable' && options.lagging?.nodes.includes(node.name) === true;
          if (!stopped) failures.push({ kind, subject: node.name, version, detail: `${node.name} at ${address(node)} over ${version}: ${detail}` });
          return { node, version };
        }
      }),
    ),
    concurrency,
  );
  const keyCounts = new Map<string, number>();
  for (const { result } of fresh) {
    if (result?.ticketKeyName) keyCounts.set(result.ticketKeyName, (keyCounts.get(result.ticketKeyName) ?? 0) + 1);
  }
  const inferred = [...keyCounts].sort((a, b) => b[1] - a[1])[0]?.[0];
  const expectedKey = options.expectedKey ?? inferred;
  const acceptable = (key: string | undefined, node: string) =>
    key !== undefined && (key === expectedKey || key === options.pendingKey || (key === options.lagging?.key && options.lagging.nodes.includes(node)));
  const certificates = new Map<string, string>();
  const software = new Map<string, string>();
  const nodeReports: NodeReport[] = nodes.map((node) => {
    const mine = fresh.filter((entry) => entry.node === node);
    const keys: Partial<Record<TlsVersion, string>> = {};
    for (const { version, result } of mine) {
      if (result === undefined) continue;
      certificates.set(node.name, result.certificateFingerprint);
      if (result.serverSoftware !== undefined) software.set(node.name, result.serverSoftware);
      if (result.ticketKeyName === undefined) {
        const software = result.serverSoftware;
        const hint = isServerFlavor(software) ? FLAVORS[software].ticketsOn : Object.values(FLAVORS).map((flavor) => `${flavor.name}: ${flavor.ticketsOn}`).join('; ');
        failures.push({ kind: 'no ticket', subject: node.name, version, detail: `${node.name} issued no session ticket over ${version}: turn session tickets on (${hint})` });
      } else {
        keys[version] = result.ticketKeyName;
        if (!acceptable(result.ticketKeyName, node.name)) {
          failures.push({
            kind: 'wrong key',
            subject: node.name,
            version,
            detail: `${node.name} encrypts ${version} tickets with key ${result.ticketKeyName}, expected ${expectedKey ?? 'a shared key'}${options.pendingKey ? ` or the pending ${options.pendingKey}` : ''}`,
          });
        }
      }
    }
    const reachable = mine.some((entry) => entry.result !== undefined);
    return { node: node.name, address: address(node), reachable, keys, serverSoftware: software.get(node.name), onExpectedKey: reachable && versions.every((version) => acceptable(keys[version], node.name)) };
  });

  // 2. Each node's ticket offered to its peers.
  const reachable = nodes.filter((node) => nodeReports.find((report) => report.node === node.name)?.reachable);
  const peersPerNode = options.peersPerNode ?? (nodes.length <= FULL_MESH_MAX_NODES ? nodes.length - 1 : DEFAULT_SAMPLED_PEERS);
  const byName = new Map(nodes.map((node) => [node.name, node]));
  const explainNotResumed = (issuer: string, resumer: string): { kind: FailureKind; detail: string } => {
    const a = certificates.get(issuer);
    const b = certificates.get(resumer);
    if (a !== undefined && b !== undefined && a !== b) {
      return { kind: 'different certificate', detail: 'the two nodes present different certificates, and tickets never resume across certificates' };
    }
    const issuerSoftware = software.get(issuer);
    const resumerSoftware = software.get(resumer);
    if (issuerSoftware !== undefined && resumerSoftware !== undefined && issuerSoftware !== resumerSoftware) {
      return {
        kind: 'different server flavor',
        detail: `${issuer} runs ${issuerSoftware} and ${resumer} runs ${resumerSoftware}, and tickets never resume across server software: run one flavor on every node`,
      };
    }
    return { kind: 'not resumed', detail: 'the resuming node does not hold the key the ticket was encrypted with' };
  };
  type Purpose = 'pair' | 'continuity' | 'revoked' | 'retired';
  const resumeTasks: (() => Promise<{ ok: boolean; purpose: Purpose }>)[] = [];
  const offer = (issuer: string, session: Buffer, resumer: VerifyNode, version: TlsVersion, purpose: Purpose) =>
    resumeTasks.push(async () => {
      const subject = `${issuer} -> ${resumer.name}`;
      try {
        const result = await handshake(resumer, { version, session, timeoutMs });
        if (purpose === 'revoked' || purpose === 'retired') {
          if (!result.resumed) return { ok: true, purpose };
          failures.push(
            purpose === 'revoked'
              ? {
                  kind: 'revoked key accepted',
                  subject,
                  version,
                  detail: `a ${version} ticket ${issuer} issued before the revocation resumed on ${resumer.name}: it still holds a revoked key; apply the current set to it`,
                }
              : {
                  kind: 'retired key accepted',
                  subject,
                  version,
                  detail: `a ${version} ticket ${issuer} issued before the rotation resumed on ${resumer.name}, whose server holds one key: it still runs the key before; apply the current set to it and reload it`,
                },
          );
          return { ok: false, purpose };
        }
        if (result.resumed) return { ok: true, purpose };
        const { kind, detail } = explainNotResumed(issuer, resumer.name);
        failures.push(
          purpose === 'continuity'
            ? { kind: 'continuity', subject, version, detail: `a ${version} ticket ${issuer} issued before the rotation did not resume on ${resumer.name}: ${detail}` }
            : { kind, subject, version, detail: `${issuer}'s ${version} ticket did not resume on ${resumer.name}: ${detail}` },
        );
      } catch (error) {
        const { kind, detail } = describeError(error);
        failures.push({ kind, subject, version, detail: `${resumer.name} at ${address(resumer)} while resuming ${issuer}'s ${version} ticket: ${detail}` });
      }
      return { ok: false, purpose };
    });
  // A server that holds one key (Apache) cannot open a ticket of another key: between two such
  // nodes on different keys, each acceptable (mid-rotation, or a node a rotation left behind),
  // that is the server's cost, not a fault, and the pair is not tried.
  const holdsOneKey = (name: string): boolean => {
    const flavor = software.get(name);
    return isServerFlavor(flavor) && !ticketsSurviveRotation(flavor);
  };
  const reportOf = new Map(nodeReports.map((report) => [report.node, report]));
  const acrossKeys = (issuer: string, resumer: string, version: TlsVersion): boolean => {
    if (!holdsOneKey(issuer) || !holdsOneKey(resumer)) return false;
    const [a, b] = [reportOf.get(issuer)?.keys[version], reportOf.get(resumer)?.keys[version]];
    return a !== b && acceptable(a, issuer) && acceptable(b, resumer);
  };
  let pairsAcrossKeys = 0;
  const peers = choosePeers(reachable.map((node) => node.name), peersPerNode, options.seed ?? 1);
  for (const { node, version, result } of fresh) {
    if (result?.session === undefined) continue;
    for (const peer of peers.get(node.name) ?? []) {
      if (acrossKeys(node.name, peer, version)) pairsAcrossKeys += 1;
      else offer(node.name, result.session, byName.get(peer) as VerifyNode, version, 'pair');
    }
  }
  // Tickets from before: every one on every node in a small fleet. Above it, for continuity,
  // each node gets one per TLS version, the captured ones in turn: every node is tried, every
  // captured ticket is tried on some nodes, and the handshakes stay linear in the fleet's size.
  // A revocation offers every revoked ticket to every node: each may be under another old key,
  // and no node may accept any of them. Retired tickets are all under the one key before.
  const offerEverywhere = (tickets: CapturedTicket[], purpose: 'continuity' | 'revoked' | 'retired'): void => {
    // A node a rotation left behind still holds the key before: a retired ticket may resume there.
    const resumers = purpose === 'retired' ? reachable.filter((node) => !options.lagging?.nodes.includes(node.name)) : reachable;
    if (resumers.length <= FULL_MESH_MAX_NODES || purpose === 'revoked') {
      for (const ticket of tickets) for (const resumer of resumers) offer(ticket.node, ticket.session, resumer, ticket.version, purpose);
      return;
    }
    for (const version of versions) {
      const mine = tickets.filter((ticket) => ticket.version === version);
      resumers.forEach((resumer, index) => {
        const ticket = mine[index % mine.length];
        if (ticket !== undefined) offer(ticket.node, ticket.session, resumer, version, purpose);
      });
    }
  };
  offerEverywhere(options.ticketsBefore ?? [], 'continuity');
  offerEverywhere(options.revokedTickets ?? [], 'revoked');
  offerEverywhere(options.retiredTickets ?? [], 'retired');
  const outcomes = await pool(resumeTasks, concurrency);
  type Counted = { tried: number; succeeded: number };
  const count = (purpose: Purpose): Counted => {
    const mine = outcomes.filter((outcome) => outcome.purpose === purpose);
    return { tried: mine.length, succeeded: mine.filter((outcome) => outcome.ok).length };
  };
  const [pairs, continuity, revoked, retired] = (['pair', 'continuity', 'revoked', 'retired'] as const).map(count) as [Counted, Counted, Counted, Counted];
  failures.sort((a, b) => a.subject.localeCompare(b.subject) || (a.version ?? '').localeCompare(b.version ?? '') || a.kind.localeCompare(b.kind));
  return {
    ok: failures.length === 0,
    expectedKey,
    expectedKeyInferred: options.expectedKey === undefined,
    nodes: nodeReports,
    pairs: { tried: pairs.tried, resumed: pairs.succeeded },
    pairsAcrossKeys,
    continuity: { tried: continuity.tried, resumed: continuity.succeeded },
    revocation: { tried: revoked.tried, refused: revoked.succeeded },
    retired: { tried: retired.tried, fellBack: retired.succeeded },
    peersPerNode: Math.min(peersPerNode, Math.max(reachable.length - 1, 0)),
    failures,
    durationMs: Date.now() - started,
  };
}

/** The report as a table people read; no session material is in the report to begin with. */
export function formatReport(report: VerificationReport): string {
  const versions = [...new Set(report.nodes.flatMap((node) => Object.keys(node.keys)))].sort() as TlsVersion[];
  const short = (name: string | undefined): string => (name === undefined ? '-' : name.slice(0, 12));
  const header = ['node', 'address', 'server', 'reachable', ...versions.map((version) => `${version} key`), 'on expected key'];
  const rows = [
    header,
    ...report.nodes.map((node) => [node.node, node.address, node.serverSoftware ?? '-', node.reachable ? 'yes' : 'NO', ...versions.map((version) => short(node.keys[version])), node.onExpectedKey ? 'yes' : 'NO']),
  ];
  const widths = header.map((_, column) => Math.max(...rows.map((row) => (row[column] as string).length)));
  const lines = rows.map((row) => row.map((cell, column) => cell.padEnd(widths[column] as number)).join('  ').trimEnd());
  lines.push(
    '',
    `expected key: ${report.expectedKey ?? 'none'}${report.expectedKeyInferred ? ' (the key most nodes use)' : ''}`,
    `cross-node resumption: ${report.pairs.resumed}/${report.pairs.tried} (${report.peersPerNode} peer(s) per node)`,
  );
  if (report.pairsAcrossKeys > 0) lines.push(`pairs across keys not tried: ${report.pairsAcrossKeys} (the server holds one key: nodes on different keys cannot resume each other's tickets)`);
  if (report.continuity.tried > 0) lines.push(`tickets from before the rotation: ${report.continuity.resumed}/${report.continuity.tried} resumed`);
  if (report.revocation.tried > 0) lines.push(`tickets from before the revocation: ${report.revocation.refused}/${report.revocation.tried} refused`);
  if (report.retired.tried > 0) {
    lines.push(`tickets from before the rotation: ${report.retired.fellBack}/${report.retired.tried} fell back to a full handshake (the server holds one key: the cost of each rotation)`);
  }
  for (const failure of report.failures) lines.push(`FAIL ${failure.kind}: ${failure.detail}`);
  lines.push(report.ok ? `PASS (${report.durationMs} ms)` : `FAIL: ${report.failures.length} problem(s) (${report.durationMs} ms)`);
  return lines.join('\n');
}
