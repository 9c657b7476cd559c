import {
  createKeySet,
  currentKey,
  EMPTY_KEY_SET_PLACEHOLDER,
  parseKeySet,
  revokeKeySet,
  rotateKeySet,
  serializeKeySet,
  KeySetError,
  type KeyFactoryOptions,
  type KeySet,
} from './keyset.js';
import { previousKeysToKeep, ticketsSurviveRotation, type RotationPolicy } from './policy.js';
import type { KeyNamesBoard, VersionKeyNames } from './key-names.js';
import { AWSCURRENT, AWSPENDING, AWSPREVIOUS, type SecretStore, type SecretVersion } from './secret-store.js';

/** What one node reported after the applier ran on it. */
export interface NodeResult {
  node: string;
  ok: boolean;
  generation?: number;
  keys: string[];
  action?: string;
  /** False when the node keeps its keys on a persistent filesystem (allowed on purpose only). */
  keysInMemory?: boolean;
  error?: string;
  /** Why the node was not asked at all (stopped, or not connected): it neither fails nor passes. */
  skipped?: string;
}

/** What one node reports it is serving; `generation` is absent when it has no managed set. */
export interface NodeStatus {
  node: string;
  generation?: number;
  keys: string[];
  error?: string;
  /** Why the node was not asked at all (stopped, or not connected). */
  skipped?: string;
}

/** Runs the node applier on every node of the fleet. */
export interface FleetCommander {
  /** Makes every node load the secret version `versionId`, and reports each node's result. */
  apply(versionId: string): Promise<NodeResult[]>;
  /** Asks every node which generation it serves. */
  status(): Promise<NodeStatus[]>;
  /**
   * Whether an apply of `versionId` that an earlier attempt sent is still running (a step that ran
   * out of time): the gate was checked before it was sent, and the retry goes on with it.
   * Commanders whose applies cannot outlive a step leave it out.
   */
  applying?(versionId: string): Promise<boolean>;
}

/**
 * What tickets captured before a version must do after it: resume (a rotation), be refused (a
 * revocation), or fall back to a full handshake (a rotation on a server that holds one key).
 */
export type CapturedTicketsMust = 'resume' | 'be refused' | 'fall back to a full handshake';

/** What the rotation reads of a verification: whether it passed, and each finding. A verifier's own report says more. */
export interface VerificationOutcome {
  ok: boolean;
  failures: readonly { kind: string; detail: string }[];
}

/** Proves on the wire what the nodes report. */
export interface FleetVerifier<Report extends VerificationOutcome = VerificationOutcome> {
  /** Takes tickets from the nodes before they load `versionId`, to offer them again after. */
  captureBefore(versionId: string): Promise<void>;
  /**
   * Every node encrypts with `expectedKey` (the `lagging` nodes may still encrypt with the key
   * before it), tickets resume across nodes, and the tickets captured before `versionId`, if
   * any, resume everywhere or nowhere as `captured` says.
   */
  verify(versionId: string, expectedKey: string, captured: CapturedTicketsMust, lagging?: LaggingNodes): Promise<Report>;
  /** The key each of these nodes encrypts new tickets with, as a client sees it; null when it does not answer. */
  observe(nodes: string[]): Promise<Record<string, string | null>>;
}

/** Nodes the commander skipped: they may still serve the set before (encrypt with its current key), or not answer at all. */
export interface LaggingNodes {
  nodes: string[];
  key: string;
}

export class RotationError extends Error {
  override name = 'RotationError';

  /** Per-node results when the failure is about nodes. */
  constructor(
    message: string,
    readonly results: NodeResult[] = [],
  ) {
    super(message);
  }
}

export interface RotationContext<Report extends VerificationOutcome = VerificationOutcome> {
  store: SecretStore;
  /** Where the rotation publishes the current and pending key names, for a verifier that may not read the key set. */
  keyNames?: KeyNamesBoard;
  commander: FleetCommander;
  /** When set, setSecret captures tickets first and testSecret proves the rotation with handshakes. */
  verifier?: FleetVerifier<Report>;
  policy: RotationPolicy;
  keys?: KeyFactoryOptions;
}

async function currentKeySet(store: SecretStore): Promise<KeySet | undefined> {
  const current = await store.getVersion({ stage: AWSCURRENT });
  if (current === undefined || current.value === EMPTY_KEY_SET_PLACEHOLDER) return undefined;
  try {
    return parseKeySet(current.value);
  } catch (error) {
    const reason = error instanceof KeySetError ? error.message : String(error);
    throw new RotationError(
      `the AWSCURRENT key set (version ${current.versionId}) is malformed, so no rotation was started and nothing was written: ${reason}`,
    );
  }
}

async function pendingKeySet(store: SecretStore, token: string): Promise<KeySet> {
  const pending = await store.getVersion({ versionId: token });
  if (pending === undefined || !pending.stages.includes(AWSPENDING)) {
    const other = await store.getVersion({ stage: AWSPENDING });
    if (pending !== undefined && other !== undefined) {
      throw new RotationError(
        `version ${token} is no longer the pending key set: version ${other.versionId} took AWSPENDING (a rotation started at the same time); this attempt stops here and promotes nothing; that rotation carries on`,
      );
    }
    throw new RotationError(`version ${token} is not the pending key set: run the createSecret step for it first`);
  }
  return parseKeySet(pending.value);
}

/** A revocation replaces every key: the set shares none with the current one. */
export function isRevocation(pending: KeySet, current: KeySet | undefined): boolean {
  if (current === undefined) return false;
  const held = new Set(current.keys.map((key) => key.name));
  return pending.keys.every((key) => !held.has(key.name));
}

/** The pending version `token` when it revokes every key, for audit lines; undefined otherwise. */
export async function pendingRevocation(store: SecretStore, token: string): Promise<KeySet | undefined> {
  const pending = await store.getVersion({ versionId: token });
  if (pending === undefined || !pending.stages.includes(AWSPENDING)) return undefined;
  const keySet = parseKeySet(pending.value);
  return isRevocation(keySet, await currentKeySet(store)) ? keySet : undefined;
}

async function createPendingSet(context: RotationContext, token: string): Promise<KeySet> {
  const { store, policy } = context;
  const existing = await store.getVersion({ versionId: token });
  if (existing?.stages.includes(AWSPENDING)) return parseKeySet(existing.value);
  const current = await currentKeySet(store);
  const earlier = await earlierPending(store, current);
  const expected = (current?.generation ?? 0) + 1;
  const revoke = (await store.revocationRequest()) !== undefined;
  if (!revoke && earlier?.keySet.generation === expected) {
    await store.putVersion(token, earlier.value, [AWSPENDING]);
    return earlier.keySet;
  }
  const retained = previousKeysToKeep(policy);
  let next: KeySet;
  if (revoke && current !== undefined) {
    // Above any generation an earlier attempt may have put on some nodes, so none refuses it.
    const highest = Math.max(current.generation, earlier?.keySet.generation ?? 0);
    next = revokeKeySet({ ...current, generation: highest }, context.keys);
  } else if (current === undefined) {
    next = createKeySet(policy.keyLength, context.keys);
  } else {
    next = rotateKeySet(current, retained, context.keys);
  }
  try {
    await store.putVersion(token, serializeKeySet(next), [AWSPENDING]);
  } catch (error) {
    // The same step running twice at once: the other invocation stored its set first. Use it.
    const winner = await store.getVersion({ versionId: token });
    if (winner?.stages.includes(AWSPENDING)) return parseKeySet(winner.value);
    throw error;
  }
  return next;
}

/**
 * createSecret: stores g+1 as AWSPENDING under `token`, or, when an operator asked for a
 * revocation (store.revocationRequest), a set of fresh keys retaining none. Repeating it
 * changes nothing; a pending g+1 left by an earlier failed attempt is carried over rather than
 * replaced, since some nodes may already serve it.
 */
export async function createPending(context: RotationContext, token: string): Promise<KeySet> {
  const keySet = await createPendingSet(context, token);
  await publishKeyNames(context);
  return keySet;
}

function keySetOrNothing(value: string): KeySet | undefined {
  try {
    return parseKeySet(value);
  } catch {
    return undefined;
  }
}

/** What the board says of a version: its current key's name; nothing when it holds no key set. */
function keyNamesOf(version: SecretVersion | undefined): VersionKeyNames | undefined {
  if (version === undefined) return undefined;
  const set = keySetOrNothing(version.value);
  return set === undefined ? undefined : { versionId: version.versionId, generation: set.generation, currentKey: currentKey(set).name };
}

/**
 * Publishes the names of AWSCURRENT's and AWSPENDING's current keys, from the store as it is:
 * repeating it after a retried step writes the same document. The placeholder before the first
 * rotation is no key set; nor is a pending version no createSecret wrote (Secrets Manager's
 * configuration test): only the next generation is the one a rotation rolls out.
 */
async function publishKeyNames(context: RotationContext): Promise<void> {
  if (context.keyNames === undefined) return;
  const current = keyNamesOf(await context.store.getVersion({ stage: AWSCURRENT }));
  const pending = keyNamesOf(await context.store.getVersion({ stage: AWSPENDING }));
  const rollingOut = pending !== undefined && pending.generation === (current?.generation ?? 0) + 1;
  await context.keyNames.write({ ...(current ? { current } : {}), ...(rollingOut ? { pending } : {}) });
}

/**
 * A pending version left by an earlier attempt, if it holds a valid key set: the one labelled
 * AWSPENDING, or else the newest unlabelled version. After CancelRotateSecret, AWS tells
 * operators to take AWSPENDING off the partly rotated version; nodes may already serve it, and
 * they refuse another set of the same generation, so it must be found all the same.
 */
async function earlierPending(store: SecretStore, current: KeySet | undefined): Promise<{ value: string; keySet: KeySet } | undefined> {
  const labelled = await store.getVersion({ stage: AWSPENDING });
  if (labelled !== undefined) return withKeySet(labelled.value);
  // Newest first; other unlabelled versions (older sets, a configuration test's copy) are passed over.
  for (const versionId of await store.unlabelledVersionIds()) {
    const earlier = await store.getVersion({ versionId });
    const found = earlier && withKeySet(earlier.value);
    if (found?.keySet.generation === (current?.generation ?? 0) + 1) return found;
  }
  return undefined;
}

/** The value with its key set, or undefined when it is none: no node can have applied it (the applier validates first). */
function withKeySet(value: string): { value: string; keySet: KeySet } | undefined {
  const keySet = keySetOrNothing(value);
  return keySet && { value, keySet };
}

/**
 * Whether testSecret was called to test the rotation configuration rather than in a rotation.
 * Without an immediate rotation, Secrets Manager "tests the rotation configuration by running
 * the testSecret step ... The test creates an AWSPENDING version of the secret and then removes
 * it" (https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_RotateSecret.html):
 * a version no createSecret wrote, so it holds no value, or, as AWS does not say, AWSCURRENT's.
 */
export async function isConfigurationTest(store: SecretStore, token: string): Promise<boolean> {
  const pending = await store.getVersion({ versionId: token });
  if (pending === undefined) return true;
  return pending.value === (await store.getVersion({ stage: AWSCURRENT }))?.value;
}

/** The configuration test: the current key set can be read and is sound. No node is touched. */
export async function testConfiguration(context: RotationContext): Promise<KeySet | undefined> {
  return currentKeySet(context.store);
}

/** The gate: never publish g+1 while a node is observed below g. */
export function checkGate(current: KeySet | undefined, statuses: NodeStatus[]): void {
  if (current === undefined) return;
  const behind = statuses.filter((status) => status.skipped === undefined && status.error === undefined && (status.generation ?? 0) < current.generation);
  if (behind.length > 0) {
    const list = behind.map((status) => `${status.node} (${status.generation === undefined ? 'no key set' : `generation ${status.generation}`})`).join(', ');
    throw new RotationError(
      `gate closed: ${list} below the current generation ${current.generation}; publishing ${current.generation + 1} now ` +
        'would leave those nodes unable to resume tickets from the rest. Bring them to the current key set first ' +
        '(apply AWSCURRENT to them), then rotate again.',
    );
  }
}

/**
 * The gate for nodes the commander could not ask (skipped): one that still serves clients is
 * seen on the wire, and one that encrypts with a key of an older set is behind.
 */
async function checkSkippedOnTheWire(verifier: FleetVerifier | undefined, current: KeySet | undefined, statuses: NodeStatus[]): Promise<void> {
  const skipped = statuses.filter((status) => status.skipped !== undefined).map((status) => status.node);
  if (verifier === undefined || current === undefined || skipped.length === 0) return;
  const older = new Set<string | null | undefined>(current.keys.filter((key) => key.state === 'previous').map((key) => key.name));
  const observed = await verifier.observe(skipped);
  const behind = skipped.filter((node) => older.has(observed[node]));
  if (behind.length > 0) {
    throw new RotationError(
      `gate closed: ${behind.map((node) => `${node} (not reachable through SSM, and it still serves tickets under ${observed[node]}, a key of an older set)`).join(', ')} ` +
        `below the current generation ${current.generation}; publishing ${current.generation + 1} now would leave it unable to resume tickets from the rest. ` +
        'Reconnect its SSM agent (or stop it), then rotate again.',
    );
  }
}

function describeFailures(results: NodeResult[], expected: KeySet): string[] {
  const names = expected.keys.map((key) => key.name).join(',');
  return results.flatMap((result) => {
    if (result.skipped !== undefined) return [];
    if (!result.ok) return [`${result.node}: ${result.error ?? 'failed without a message'}`];
    if (result.generation !== expected.generation || result.keys.join(',') !== names) {
      return [`${result.node}: reports generation ${result.generation ?? 'none'}, expected ${expected.generation} with the pending keys`];
    }
    return [];
  });
}

/**
 * setSecret: every node loads the pending set; fails naming each node that did not. A
 * revocation passes the gate on purpose: a node left behind holds keys that must go anyway.
 */
export async function applyPending(context: RotationContext, token: string): Promise<NodeResult[]> {
  const pending = await pendingKeySet(context.store, token);
  const current = await currentKeySet(context.store);
  const revocation = isRevocation(pending, current);
  const goingOn = (await context.commander.applying?.(token)) === true;
  if (!revocation && !goingOn) {
    const statuses = await context.commander.status();
    checkGate(current, statuses);
    await checkSkippedOnTheWire(context.verifier, current, statuses);
  }
  // Tickets from before must resume after a rotation and be refused after a revocation; the
  // first set has no tickets before it that anyone expects to keep. An apply going on was
  // preceded by its capture, before any node moved.
  if (current !== undefined && !goingOn) await context.verifier?.captureBefore(token);
  const results = await context.commander.apply(token);
  const failures = describeFailures(results, pending);
  if (failures.length > 0) {
    throw new RotationError(`generation ${pending.generation} did not reach every node: ${failures.join('; ')}`, results);
  }
  return results;
}

export interface TestOutcome<Report extends VerificationOutcome = VerificationOutcome> {
  statuses: NodeStatus[];
  verification?: Report;
}

/**
 * testSecret: every node reports serving exactly the pending set, and, with a verifier, the
 * handshakes agree: every node encrypts with the pending current key, tickets resume across
 * nodes and tickets from before the rotation still resume.
 */
export async function testPending<Report extends VerificationOutcome>(context: RotationContext<Report>, token: string): Promise<TestOutcome<Report>> {
  const pending = await pendingKeySet(context.store, token);
  const statuses = await context.commander.status();
  const failures = describeFailures(
    statuses.map((status) => ({ ...status, ok: status.error === undefined })),
    pending,
  );
  if (failures.length > 0) {
    throw new RotationError(`nodes do not serve generation ${pending.generation}: ${failures.join('; ')}`);
  }
  if (context.verifier === undefined) return { statuses };
  const current = await currentKeySet(context.store);
  const revocation = isRevocation(pending, current);
  // Nodes the commander skipped may still serve the current set (one generation behind is safe), or be stopped.
  const skipped = statuses.filter((status) => status.skipped !== undefined).map((status) => status.node);
  const lagging = skipped.length > 0 && current !== undefined && !revocation ? { nodes: skipped, key: currentKey(current).name } : undefined;
  const captured = revocation ? 'be refused' : ticketsSurviveRotation(context.policy.flavor) ? 'resume' : 'fall back to a full handshake';
  const verification = await context.verifier.verify(token, currentKey(pending).name, captured, lagging);
  if (!verification.ok) {
    const problems = verification.failures.map((failure) => `${failure.kind}: ${failure.detail}`);
    throw new RotationError(`verification of generation ${pending.generation} failed: ${problems.join('; ')}`);
  }
  return { statuses, verification };
}

/**
 * finishSecret: the pending version becomes AWSCURRENT; a finished revocation withdraws the
 * request that asked for it. The version before keeps no stage: AWSPREVIOUS would keep its keys
 * one stage-name away from anyone allowed to read the secret, after the policy dropped the
 * oldest of them (the new set still holds every previous key the policy keeps).
 */
export async function finishPending(context: RotationContext, token: string): Promise<void> {
  const version = await context.store.getVersion({ versionId: token });
  if (!version?.stages.includes(AWSCURRENT)) {
    const pending = await pendingKeySet(context.store, token);
    const revocation = isRevocation(pending, await currentKeySet(context.store));
    await context.store.moveStage(AWSCURRENT, token);
    await context.store.removeStage(AWSPENDING, token);
    if (revocation) await context.store.clearRevocationRequest();
  }
  for (const [versionId, stages] of Object.entries(await context.store.versionStages())) {
    if (stages.includes(AWSPREVIOUS)) await context.store.removeStage(AWSPREVIOUS, versionId);
  }
  await publishKeyNames(context);
}

export interface RotationOutcome<Report extends VerificationOutcome = VerificationOutcome> {
  versionId: string;
  keySet: KeySet;
  results: NodeResult[];
  verification?: Report;
}

/**
 * The four steps in order, as Secrets Manager runs them on AWS: the local mode's rotation.
 * A failed step leaves the pending version in place; the next attempt carries it over.
 */
export async function rotateNow<Report extends VerificationOutcome>(context: RotationContext<Report>, versionId: string): Promise<RotationOutcome<Report>> {
  const keySet = await createPending(context, versionId);
  const results = await applyPending(context, versionId);
  const { verification } = await testPending(context, versionId);
  await finishPending(context, versionId);
  return { versionId, keySet, results, ...(verification ? { verification } : {}) };
}
