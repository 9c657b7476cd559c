import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { currentKey, nextKey, previousKeys, type KeySet } from '../core/keyset.js';
import { formatDuration, previousKeysToKeep, rotationCost, ticketsSurviveRotation, type RotationPolicy } from '../core/policy.js';
import { DEFAULT_FLAVOR } from '../flavors/index.js';
import { rotateNow, type RotationContext, type RotationOutcome } from '../core/rotation.js';
import { TLS_VERSIONS } from '../tls/probe.js';
import type { VerificationReport } from '../verify/verifier.js';
import { startLocalFleet } from './fleet.js';
import { FileKeyNames } from './file-key-names.js';
import { LocalFleetCommander } from './local-fleet-commander.js';
import { LocalFleetVerifier } from './local-fleet-verifier.js';
import { difference, ResumptionClient, sumStats, type ResumptionStats } from './resumption-client.js';

export interface DemoOptions {
  nodes: number;
  rotations: number;
  policy: RotationPolicy;
  /** Time the clients run between rotations. */
  pauseMs?: number;
  print?: (line: string) => void;
}

const short = (name: string): string => name.slice(0, 8);

function describeKeys(set: KeySet): string {
  const previous = previousKeys(set).map((key) => short(key.name)).join(',') || '-';
  return `current ${short(currentKey(set).name)}  next ${short(nextKey(set).name)}  previous ${previous}`;
}

function describeVerification(report: VerificationReport, nodes: number): string {
  const onKey = report.nodes.filter((node) => node.onExpectedKey).length;
  const continuity = report.continuity.tried > 0 ? `, tickets from before ${report.continuity.resumed}/${report.continuity.tried}` : '';
  const retired = report.retired.tried > 0 ? `, tickets from before fell back to a full handshake ${report.retired.fellBack}/${report.retired.tried}` : '';
  return `verified: ${onKey}/${nodes} on current key, cross-node ${report.pairs.resumed}/${report.pairs.tried}${continuity}${retired}`;
}

/** Waits until every client has made `count` more connections: the ones in flight when a rotation ended, and one after. */
async function afterConnections(clients: ResumptionClient[], count: number): Promise<void> {
  const start = clients.map((client) => client.snapshot());
  const deadline = Date.now() + 10_000;
  const made = (client: ResumptionClient, index: number): number => {
    const now = client.snapshot();
    const then = start[index] as ResumptionStats;
    return now.attempts + now.errors - then.attempts - then.errors;
  };
  while (Date.now() < deadline && clients.some((client, index) => made(client, index) < count)) await sleep(10);
}

/**
 * The local mode's main job: a real fleet, the real applier, the same rotation steps as on
 * AWS, and clients that must keep resuming through every rotation. Resolves true on success.
 */
export async function runDemo(options: DemoOptions): Promise<boolean> {
  const print = options.print ?? ((line: string) => console.log(line));
  const retained = previousKeysToKeep(options.policy);
  const flavor = options.policy.flavor ?? DEFAULT_FLAVOR;
  // A server that holds one key (Apache) loses every ticket at each rotation: each client pays
  // a full handshake then, and must resume everywhere between rotations.
  const cost = rotationCost(options.policy);
  const fleet = await startLocalFleet({ nodeCount: options.nodes, flavor });
  const clients = TLS_VERSIONS.map((version) => new ResumptionClient(fleet.balancer, version));
  try {
    const store = fleet.store;
    const context: RotationContext<VerificationReport> = {
      store,
      // As on AWS, the rotation publishes the key names a verifier checks against.
      keyNames: new FileKeyNames(join(fleet.memoryDir, 'key-names.json')),
      commander: new LocalFleetCommander(fleet, store, { maxDelayMs: 300 }),
      verifier: new LocalFleetVerifier(() => fleet.runningNodes()),
      policy: options.policy,
    };
    print(
      `Fleet: ${options.nodes} ${flavor} nodes (TLS 1.2 and 1.3, session cache off: only tickets resume) ` +
        `behind HAProxy in TCP round-robin at ${fleet.balancer.host}:${fleet.balancer.port}`,
    );
    print(
      `Policy: rotate every ${formatDuration(options.policy.rotationIntervalSeconds)}, tickets live ` +
        `${formatDuration(options.policy.ticketLifetimeSeconds)}: keep ${retained} previous key(s)${cost === undefined ? '' : ` in the set (${flavor} nodes load only the current key)`}; ` +
        `${options.policy.keyLength}-byte keys. The demo rotates every few hundred milliseconds instead.`,
    );
    if (cost !== undefined) print(`Cost: ${cost}`);
    const rotationLine = (label: string, outcome: RotationOutcome<VerificationReport>): string =>
      `${label.padEnd(11)} generation ${String(outcome.keySet.generation).padEnd(3)} ${describeKeys(outcome.keySet)}  ` +
      `nodes ${outcome.results.filter((result) => result.ok).length}/${options.nodes} applied ` +
      `(${outcome.results.map((result) => result.node).join(' ')}); ${describeVerification(outcome.verification as VerificationReport, options.nodes)}`;

    const first = await rotateNow(context, randomUUID());
    print(rotationLine('first set', first));
    for (const client of clients) client.start();
    print('Clients reconnect through the load balancer (TLS 1.2 and TLS 1.3), offering their newest session each time.');
    const pauseMs = options.pauseMs ?? 600;
    await sleep(pauseMs);

    let latest = first.keySet;
    const betweenRotations: ResumptionStats[] = [];
    const snapshots = (): ResumptionStats[] => clients.map((client) => client.snapshot());
    for (let rotation = 1; rotation <= options.rotations; rotation += 1) {
      const before = snapshots();
      const outcome = await rotateNow(context, randomUUID());
      let settled = before;
      if (cost !== undefined) {
        await afterConnections(clients, 3);
        settled = snapshots();
      }
      await sleep(pauseMs);
      const now = snapshots();
      const during = sumStats(now.map((stats, index) => difference(stats, before[index] as ResumptionStats)));
      const after = sumStats(now.map((stats, index) => difference(stats, settled[index] as ResumptionStats)));
      betweenRotations.push(after);
      const settledLine = cost === undefined ? '' : `, then ${after.resumed}/${after.attempts} once each client had its new ticket`;
      print(`${rotationLine(`rotation ${rotation}`, outcome)}; clients resumed ${during.resumed}/${during.attempts}${settledLine}`);
      latest = outcome.keySet;
    }
    const stats = await Promise.all(clients.map((client) => client.stop()));
    const all = sumStats(stats);
    const between = sumStats(betweenRotations);
    const perVersion = clients.map((client, index) => `${client.version} ${stats[index]?.resumed}/${stats[index]?.attempts}`).join(', ');
    const resumedThrough = ticketsSurviveRotation(flavor) ? all : between;
    const ok = resumedThrough.attempts > 0 && resumedThrough.resumed === resumedThrough.attempts && all.errors === 0;
    print(
      `Summary: ${options.rotations} rotation(s) to generation ${latest.generation}; resumed ${all.resumed}/${all.attempts} ` +
        `(${perVersion}); full handshakes instead of resumption ${all.notResumed}; connection errors ${all.errors}` +
        (all.errors > 0 ? ` (last: ${stats.find((s) => s.lastError)?.lastError})` : '') +
        (cost === undefined ? '' : `; between rotations resumed ${between.resumed}/${between.attempts}`),
    );
    const passed =
      cost === undefined
        ? 'PASS: no client lost resumption across the rotations, and the verifier found every node on the current key.'
        : `PASS: between rotations every client resumed on every node, and the verifier found every node on the current key; each rotation cost each client full handshakes, as ${flavor}'s one key must.`;
    print(ok ? passed : 'FAIL: some resumptions failed, or the verifier found a problem.');
    return ok;
  } finally {
    await Promise.all(clients.map((client) => client.stop()));
    await fleet.stop();
  }
}
