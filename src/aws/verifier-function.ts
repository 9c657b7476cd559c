import type { Logger } from '@aws-lambda-powertools/logger';
import { MetricUnit, type Metrics } from '@aws-lambda-powertools/metrics';
import { paginateDescribeInstances, type EC2Client } from '@aws-sdk/client-ec2';
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { TLS_VERSIONS, type TlsVersion } from '../tls/probe.js';
import { parseNodeList } from '../verify/nodes.js';
import { captureSources, captureTickets, capturedTicketsOption, DEFAULT_CAPTURED_NODES, observeKeys, verifyFleet, type CapturedTicket, type VerificationReport, type VerifyNode } from '../verify/verifier.js';
import type { SSMClient } from '@aws-sdk/client-ssm';
import type { CapturedTicketsMust, LaggingNodes } from '../core/rotation.js';
import { readKeyNames } from './key-names-reader.js';
import { TicketStore } from './ticket-store.js';
import { VERIFIER_ENVIRONMENT, VERIFIER_METRICS } from './contract.js';
import { requiredSetting } from './environment.js';

export type VerifierAction = 'capture' | 'verify' | 'canary' | 'observe';

export interface VerifierEvent {
  /** Scheduled canary runs send `canary`; the rotation function sends `capture` and `verify`. */
  action?: VerifierAction;
  versionId?: string;
  expectedKey?: string;
  /** verify: what the tickets captured before the version must do after it (resume, unless told otherwise). */
  captured?: CapturedTicketsMust;
  /** verify: nodes the rotation could not reach through SSM, which may still encrypt with the key before. */
  lagging?: LaggingNodes;
  /** observe: the nodes (by name, the instance id) whose encrypting key to report. */
  nodes?: string[];
}

export interface VerifierSettings {
  /** Where the rotation publishes the key names: the verifier reads no key set. */
  keyNamesParameter: string;
  ticketStoreSecretArn: string;
  tagKey: string;
  tagValue: string;
  /** Fixed nodes ([NAME=]HOST:PORT[/SNI]); when empty, running instances with the tag are discovered. */
  staticNodes: string[];
  port: number;
  servername?: string;
  addresses: 'private' | 'public';
  peersPerNode?: number;
  /** Nodes whose tickets are kept across a rotation (each in both TLS versions). */
  capturedNodes: number;
}

export interface VerifierDependencies {
  ec2: EC2Client;
  secrets: SecretsManagerClient;
  ssm: SSMClient;
  logger: Logger;
  metrics: Metrics;
  settings: VerifierSettings;
}

export type VerifierResponse =
  | { action: 'capture'; versionId: string; captured: number; reused: boolean }
  | ({ action: 'verify' | 'canary' } & VerificationReport)
  | { action: 'canary'; skipped: string }
  | { action: 'observe'; keys: Record<string, string | null> };

/** The ticket store's value: sessions are secret (they hold master secrets), so they live in a KMS-encrypted secret. */
interface StoredTickets {
  versionId: string;
  capturedAt: string;
  tickets: { node: string; version: TlsVersion; session: string }[];
}

const STORE_LIMIT_BYTES = 60_000;

export function verifierSettingsFromEnvironment(environment: Record<string, string | undefined>): VerifierSettings {
  const setting = (name: keyof typeof VERIFIER_ENVIRONMENT): string | undefined => environment[VERIFIER_ENVIRONMENT[name]];
  const port = Number(setting('port') ?? '443');
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`${VERIFIER_ENVIRONMENT.port} ${setting('port')} is not a TCP port`);
  const staticNodes = (setting('staticNodes') ?? '').split(',').map((node) => node.trim()).filter((node) => node !== '');
  parseNodeList(staticNodes);
  const peers = setting('peersPerNode');
  return {
    keyNamesParameter: requiredSetting(environment, VERIFIER_ENVIRONMENT.keyNamesParameter),
    ticketStoreSecretArn: requiredSetting(environment, VERIFIER_ENVIRONMENT.ticketStoreSecretArn),
    tagKey: requiredSetting(environment, VERIFIER_ENVIRONMENT.targetTagKey),
    tagValue: requiredSetting(environment, VERIFIER_ENVIRONMENT.targetTagValue),
    staticNodes,
    port,
    ...(setting('sni') ? { servername: setting('sni') as string } : {}),
    addresses: setting('addresses') === 'public' ? 'public' : 'private',
    ...(peers ? { peersPerNode: Number(peers) } : {}),
    capturedNodes: Number(setting('capturedNodes') ?? DEFAULT_CAPTURED_NODES),
  };
}

/** The nodes to verify: the static list, or the running instances with the fleet's tag. */
export async function discoverNodes(ec2: EC2Client, settings: VerifierSettings): Promise<VerifyNode[]> {
  if (settings.staticNodes.length > 0) return parseNodeList(settings.staticNodes);
  const nodes: VerifyNode[] = [];
  const unreachable: string[] = [];
  const pages = paginateDescribeInstances(
    { client: ec2 },
    { Filters: [{ Name: `tag:${settings.tagKey}`, Values: [settings.tagValue] }, { Name: 'instance-state-name', Values: ['running'] }] },
  );
  for await (const page of pages) {
    for (const instance of (page.Reservations ?? []).flatMap((reservation) => reservation.Instances ?? [])) {
      const host = settings.addresses === 'public' ? instance.PublicIpAddress : instance.PrivateIpAddress;
      if (instance.InstanceId === undefined) continue;
      if (host === undefined) {
        unreachable.push(instance.InstanceId);
        continue;
      }
      nodes.push({ name: instance.InstanceId, host, port: settings.port, ...(settings.servername ? { servername: settings.servername } : {}) });
    }
  }
  // A node the verifier cannot reach must not drop out of the proof unseen.
  if (unreachable.length > 0) {
    const tag = `${settings.tagKey}=${settings.tagValue}`;
    throw new Error(
      settings.addresses === 'public'
        ? `instances ${unreachable.sort().join(', ')} carry the tag ${tag} but have no public IP address, and the verifier runs outside any VPC: ` +
            "set verifierVpcId and verifierSubnetIds to the nodes' VPC so that it connects to private addresses (or list the nodes in verifierStaticNodes)"
        : `instances ${unreachable.sort().join(', ')} carry the tag ${tag} but have no private IP address: list the nodes in verifierStaticNodes`,
    );
  }
  return nodes.sort((a, b) => a.name.localeCompare(b.name));
}

function ticketStore(deps: VerifierDependencies): TicketStore {
  return new TicketStore(deps.secrets, deps.settings.ticketStoreSecretArn);
}

async function readStoredTickets(deps: VerifierDependencies): Promise<StoredTickets | undefined> {
  const value = await ticketStore(deps).read();
  try {
    const stored = JSON.parse(value || '{}') as Partial<StoredTickets>;
    return stored.versionId && Array.isArray(stored.tickets) ? (stored as StoredTickets) : undefined;
  } catch {
    return undefined;
  }
}

/** Captures tickets once per version: a retried rotation keeps those taken before the first reload. */
async function capture(versionId: string, nodes: VerifyNode[], deps: VerifierDependencies): Promise<VerifierResponse> {
  const stored = await readStoredTickets(deps);
  if (stored?.versionId === versionId) return { action: 'capture', versionId, captured: stored.tickets.length, reused: true };
  const tickets = (await captureTickets(captureSources(nodes, versionId, deps.settings.capturedNodes))).map(({ node, version, session }) => ({
    node,
    version,
    session: session.toString('base64'),
  }));
  const value: StoredTickets = { versionId, capturedAt: new Date().toISOString(), tickets: [] };
  for (const ticket of tickets) {
    if (JSON.stringify({ ...value, tickets: [...value.tickets, ticket] }).length > STORE_LIMIT_BYTES) break;
    value.tickets.push(ticket);
  }
  await ticketStore(deps).replace(JSON.stringify(value));
  return { action: 'capture', versionId, captured: value.tickets.length, reused: false };
}

function publish(report: VerificationReport, deps: VerifierDependencies): void {
  const { metrics } = deps;
  const onKey = report.nodes.filter((node) => node.onExpectedKey).length;
  // No pair tried (one node, or an Apache fleet whose every pair is across keys mid-rotation) is no rate at all, not 0%.
  if (report.pairs.tried > 0) {
    metrics.addMetric(VERIFIER_METRICS.crossNodeResumptionRate, MetricUnit.Percent, (100 * report.pairs.resumed) / report.pairs.tried);
  }
  metrics.addMetric(VERIFIER_METRICS.nodesOnExpectedKey, MetricUnit.Count, onKey);
  metrics.addMetric(VERIFIER_METRICS.nodesNotOnExpectedKey, MetricUnit.Count, report.nodes.length - onKey);
  metrics.addMetric(VERIFIER_METRICS.unreachableNodes, MetricUnit.Count, report.nodes.filter((node) => !node.reachable).length);
  metrics.addMetric(VERIFIER_METRICS.verificationFailures, MetricUnit.Count, report.failures.length);
  metrics.addMetric(VERIFIER_METRICS.verificationDuration, MetricUnit.Milliseconds, report.durationMs);
  if (report.continuity.tried > 0) {
    metrics.addMetric(VERIFIER_METRICS.continuityResumptionRate, MetricUnit.Percent, (100 * report.continuity.resumed) / report.continuity.tried);
  }
}

/**
 * The verifier function: `capture` keeps tickets before a rotation reloads the nodes,
 * `verify` proves a rotation (with those tickets), `canary` checks the fleet on a schedule
 * against AWSCURRENT. Reports and logs carry key names and node results, never sessions.
 */
export async function runVerifier(event: VerifierEvent, deps: VerifierDependencies): Promise<VerifierResponse> {
  const action = event.action ?? 'canary';
  const { logger, metrics, settings } = deps;
  try {
    // The canary checks against AWSCURRENT's key; before the first rotation there is nothing to check, and no node may be tagged yet.
    const published = action === 'canary' ? await readKeyNames(deps.ssm, settings.keyNamesParameter) : {};
    if (action === 'canary' && published.current === undefined) {
      logger.info('verification skipped', { action, reason: 'the key set has no keys yet' });
      return { action: 'canary', skipped: 'the key set has no keys yet: the first rotation writes generation 1' };
    }
    const nodes = await discoverNodes(deps.ec2, settings);
    if (nodes.length === 0) {
      throw new Error(`no running instance carries the tag ${settings.tagKey}=${settings.tagValue}: check the tag, or set static nodes`);
    }
    if (action === 'observe') {
      const wanted = event.nodes ?? [];
      const keys = { ...Object.fromEntries(wanted.map((node) => [node, null])), ...(await observeKeys(nodes.filter((node) => wanted.includes(node.name)))) };
      logger.info('nodes observed', { action, keys });
      return { action: 'observe', keys };
    }
    if (action === 'capture') {
      if (!event.versionId) throw new Error('capture needs the versionId of the rotation');
      const response = await capture(event.versionId, nodes, deps);
      logger.info('tickets captured', { ...response, nodes: nodes.length });
      return response;
    }
    let expectedKey = event.expectedKey;
    let pendingKey: string | undefined;
    let captured: CapturedTicket[] = [];
    if (action === 'verify') {
      if (!expectedKey || !event.versionId) throw new Error('verify needs the versionId and the expected key name');
      const stored = await readStoredTickets(deps);
      if (stored?.versionId === event.versionId) {
        captured = stored.tickets.map((ticket) => ({ node: ticket.node, version: ticket.version, session: Buffer.from(ticket.session, 'base64') }));
      }
      // The sessions are live secrets, taken for this one check: forgotten before it runs, pass
      // or fail (a retried testSecret then checks no continuity).
      if (stored !== undefined) await ticketStore(deps).clear();
    } else if (published.current !== undefined) {
      expectedKey = published.current.currentKey;
      // During a rotation the nodes move to the pending set one by one: both keys are healthy.
      pendingKey = published.pending?.currentKey;
      // Sessions kept for a rotation that is no longer rolling out (it failed and was cancelled,
      // or a newer one started) serve no check: forget them.
      const stored = await readStoredTickets(deps);
      if (stored !== undefined && stored.versionId !== published.pending?.versionId) {
        await ticketStore(deps).clear();
        logger.info('captured tickets forgotten', { action, versionId: stored.versionId, reason: 'that version is not rolling out' });
      }
    }
    const report = await verifyFleet(nodes, {
      expectedKey,
      ...(pendingKey !== undefined ? { pendingKey } : {}),
      ...capturedTicketsOption(captured, event.captured ?? 'resume'),
      ...(event.lagging !== undefined ? { lagging: event.lagging } : {}),
      versions: TLS_VERSIONS,
      ...(settings.peersPerNode !== undefined ? { peersPerNode: settings.peersPerNode } : {}),
    });
    publish(report, deps);
    logger.info('verification', {
      action,
      ok: report.ok,
      expectedKey: report.expectedKey,
      ...(pendingKey !== undefined ? { pendingKey } : {}),
      nodes: report.nodes.length,
      nodesOnExpectedKey: report.nodes.filter((node) => node.onExpectedKey).length,
      pairs: report.pairs,
      pairsAcrossKeys: report.pairsAcrossKeys,
      continuity: report.continuity,
      revocation: report.revocation,
      retired: report.retired,
      failures: report.failures.map((failure) => `${failure.kind}: ${failure.detail}`),
      durationMs: report.durationMs,
    });
    return { action: action === 'verify' ? 'verify' : 'canary', ...report };
  } catch (error) {
    metrics.addMetric(VERIFIER_METRICS.verifierErrors, MetricUnit.Count, 1);
    logger.error('verifier failed', { action, error: error instanceof Error ? error.message : String(error) });
    throw error;
  } finally {
    metrics.publishStoredMetrics();
  }
}
