import type { Logger } from '@aws-lambda-powertools/logger';
import { MetricUnit, type Metrics } from '@aws-lambda-powertools/metrics';
import { DescribeSecretCommand, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { LambdaClient } from '@aws-sdk/client-lambda';
import type { SSMClient } from '@aws-sdk/client-ssm';
import { isKeyLength, type KeySet } from '../core/keyset.js';
import { PolicyError, previousKeysToKeep, type RotationPolicy } from '../core/policy.js';
import { DEFAULT_FLAVOR, isServerFlavor, supportedFlavors } from '../flavors/index.js';
import { rotationScheduleFor } from '../core/schedule.js';
import {
  applyPending,
  createPending,
  finishPending,
  isConfigurationTest,
  pendingRevocation,
  RotationError,
  testConfiguration,
  testPending,
  type NodeResult,
  type RotationContext,
} from '../core/rotation.js';
import { AWSCURRENT, AWSPENDING, REVOCATION_TAG } from '../core/secret-store.js';
import type { VerificationReport } from '../verify/verifier.js';
import { LambdaFleetVerifier } from './lambda-fleet-verifier.js';
import { SecretsManagerStore } from './secrets-manager-store.js';
import { SsmFleetCommander } from './ssm-fleet-commander.js';
import { SsmParameterKeyNames } from './ssm-parameter-key-names.js';
import { ROTATION_ENVIRONMENT, ROTATION_METRICS } from './contract.js';
import { requiredSetting } from './environment.js';

export const ROTATION_STEPS = ['createSecret', 'setSecret', 'testSecret', 'finishSecret'] as const;
export type RotationStep = (typeof ROTATION_STEPS)[number];

export interface RotationEvent {
  Step: string;
  SecretId: string;
  ClientRequestToken: string;
  RotationToken?: string;
}

export interface LambdaContext {
  getRemainingTimeInMillis(): number;
}

export interface RotationFunctionSettings {
  policy: RotationPolicy;
  documentName: string;
  tagKey: string;
  tagValue: string;
  maxConcurrency: string;
  maxErrors: string;
  outputLogGroup: string;
  verifierFunctionName: string;
  /** The Systems Manager parameter where the rotation publishes the current and pending key names. */
  keyNamesParameter: string;
}

export interface RotationDependencies {
  secrets: SecretsManagerClient;
  ssm: SSMClient;
  lambda: LambdaClient;
  logger: Logger;
  metrics: Metrics;
  settings: RotationFunctionSettings;
  pollIntervalMs?: number;
}

/** Time kept back from the Lambda's limit to log, publish metrics and return. */
const DEADLINE_MARGIN_MS = 30_000;

/** Reads the function's settings from its environment, refusing a policy that cannot keep tickets valid. */
export function settingsFromEnvironment(environment: Record<string, string | undefined>): RotationFunctionSettings {
  const keyLength = Number(requiredSetting(environment, ROTATION_ENVIRONMENT.keyLength));
  if (!isKeyLength(keyLength)) throw new Error(`KEY_LENGTH ${keyLength} is not supported: use 80 or 48`);
  const flavor = environment[ROTATION_ENVIRONMENT.serverFlavor] ?? DEFAULT_FLAVOR;
  if (!isServerFlavor(flavor)) throw new Error(`${ROTATION_ENVIRONMENT.serverFlavor} ${flavor} is not supported: use ${supportedFlavors()}`);
  const rotationIntervalSeconds = Number(requiredSetting(environment, ROTATION_ENVIRONMENT.rotationIntervalSeconds));
  const policy: RotationPolicy = {
    keyLength,
    flavor,
    rotationIntervalSeconds,
    ticketLifetimeSeconds: Number(requiredSetting(environment, ROTATION_ENVIRONMENT.ticketLifetimeSeconds)),
    // The stack's schedule for this interval: a rotation may take effect this long after its scheduled time.
    rotationLatenessSeconds: rotationScheduleFor(rotationIntervalSeconds).latenessSeconds,
  };
  previousKeysToKeep(policy);
  return {
    policy,
    documentName: requiredSetting(environment, ROTATION_ENVIRONMENT.documentName),
    tagKey: requiredSetting(environment, ROTATION_ENVIRONMENT.targetTagKey),
    tagValue: requiredSetting(environment, ROTATION_ENVIRONMENT.targetTagValue),
    maxConcurrency: requiredSetting(environment, ROTATION_ENVIRONMENT.maxConcurrency),
    maxErrors: requiredSetting(environment, ROTATION_ENVIRONMENT.maxErrors),
    outputLogGroup: requiredSetting(environment, ROTATION_ENVIRONMENT.commandOutputLogGroup),
    verifierFunctionName: requiredSetting(environment, ROTATION_ENVIRONMENT.verifierFunctionName),
    keyNamesParameter: requiredSetting(environment, ROTATION_ENVIRONMENT.keyNamesParameter),
  };
}

function isStep(step: string): step is RotationStep {
  return (ROTATION_STEPS as readonly string[]).includes(step);
}

function describeNodes(results: NodeResult[]): Record<string, unknown> {
  const skipped = results.filter((result) => result.skipped !== undefined);
  const failed = results.filter((result) => !result.ok && result.skipped === undefined);
  return {
    nodesUpdated: results.length - failed.length - skipped.length,
    nodesFailed: failed.length,
    nodesSkipped: skipped.length,
    nodes: results.map(({ node, ok, generation, action, error, skipped: why }) => ({ node, ok, generation, action, error, skipped: why })),
    ...(failed.length > 0 ? { failedNodes: failed.map((result) => `${result.node}: ${result.error ?? 'failed'}`).join('; ') } : {}),
    ...(skipped.length > 0 ? { skippedNodes: skipped.map((result) => `${result.node}: ${result.skipped}`).join('; ') } : {}),
  };
}

function describeVerification(report: VerificationReport): Record<string, unknown> {
  return {
    nodesOnExpectedKey: report.nodes.filter((node) => node.onExpectedKey).length,
    pairsTried: report.pairs.tried,
    pairsResumed: report.pairs.resumed,
    continuityTried: report.continuity.tried,
    continuityResumed: report.continuity.resumed,
    ...(report.revocation.tried > 0 ? { revokedTicketsTried: report.revocation.tried, revokedTicketsRefused: report.revocation.refused } : {}),
    ...(report.retired.tried > 0 ? { retiredTicketsTried: report.retired.tried, retiredTicketsFellBack: report.retired.fellBack } : {}),
  };
}

function describeKeySet(keySet: KeySet | undefined): Record<string, unknown> {
  return keySet === undefined ? {} : { generation: keySet.generation, keyNames: keySet.keys.map((key) => key.name).join(',') };
}

/**
 * One step of the Secrets Manager rotation protocol, on the core rotation steps with the
 * secret in Secrets Manager and the fleet reached through SSM Run Command. Every step is
 * repeatable: Secrets Manager retries a failed rotation with the same token.
 */
export async function runRotationStep(event: RotationEvent, context: LambdaContext, deps: RotationDependencies): Promise<void> {
  const started = Date.now();
  // The remaining time falls as the step runs: read it once, at the start.
  const deadline = started + context.getRemainingTimeInMillis() - DEADLINE_MARGIN_MS;
  const { logger, metrics, settings } = deps;
  const { Step: step, SecretId: secretId, ClientRequestToken: token } = event;
  const store = new SecretsManagerStore(deps.secrets, secretId);
  const rotation: RotationContext<VerificationReport> = {
    store,
    keyNames: new SsmParameterKeyNames(deps.ssm, settings.keyNamesParameter),
    policy: settings.policy,
    verifier: new LambdaFleetVerifier(deps.lambda, settings.verifierFunctionName),
    commander: new SsmFleetCommander(deps.ssm, {
      documentName: settings.documentName,
      secretArn: secretId,
      tagKey: settings.tagKey,
      tagValue: settings.tagValue,
      maxConcurrency: settings.maxConcurrency,
      maxErrors: settings.maxErrors,
      outputLogGroup: settings.outputLogGroup,
      deadline,
      ...(deps.pollIntervalMs !== undefined ? { pollIntervalMs: deps.pollIntervalMs } : {}),
    }),
  };
  let details: Record<string, unknown> = {};
  let outcome: 'succeeded' | 'failed' | 'skipped' = 'succeeded';
  // An emergency revocation is audited as its own action, with what the operator wrote in the tag.
  let revocation: { requestedBy: string; generation: number } | undefined;
  let configurationTest = false;
  try {
    if (!isStep(step)) throw new RotationError(`unknown rotation step "${step}": expected one of ${ROTATION_STEPS.join(', ')}`);
    const secret = await deps.secrets.send(new DescribeSecretCommand({ SecretId: secretId }));
    if (secret.RotationEnabled !== true) throw new RotationError(`secret ${secretId} does not have rotation enabled: rotate it through its rotation configuration`);
    const stages = secret.VersionIdsToStages?.[token];
    if (stages === undefined) throw new RotationError(`version ${token} of ${secretId} has no stage for rotation: start rotations with RotateSecret`);
    if (stages.includes(AWSCURRENT)) {
      outcome = 'skipped';
      details = { reason: `version ${token} is already AWSCURRENT` };
      return;
    }
    if (!stages.includes(AWSPENDING)) throw new RotationError(`version ${token} of ${secretId} is not AWSPENDING: start rotations with RotateSecret`);
    if (step === 'testSecret' && (await isConfigurationTest(store, token))) {
      configurationTest = true;
      details = { ...describeKeySet(await testConfiguration(rotation)), reason: 'Secrets Manager tested the rotation configuration: no node is touched' };
      return;
    }
    const requestTag = secret.Tags?.find((tag) => tag.Key === REVOCATION_TAG);
    const revocationOf = async (): Promise<{ requestedBy: string; generation: number } | undefined> => {
      const revoking = await pendingRevocation(store, token);
      return revoking && { requestedBy: requestTag?.Value || 'unstated (the RevokeTicketKeys tag has no value)', generation: revoking.generation };
    };
    if (step !== 'createSecret') revocation = await revocationOf();
    switch (step) {
      case 'createSecret':
        details = describeKeySet(await createPending(rotation, token));
        revocation = await revocationOf();
        break;
      case 'setSecret':
        details = describeNodes(await applyPending(rotation, token));
        metrics.addMetric(ROTATION_METRICS.nodesUpdated, MetricUnit.Count, Number(details.nodesUpdated));
        metrics.addMetric(ROTATION_METRICS.nodesSkipped, MetricUnit.Count, Number(details.nodesSkipped));
        break;
      case 'testSecret': {
        const { statuses, verification } = await testPending(rotation, token);
        details = { ...describeNodes(statuses.map((status) => ({ ...status, ok: true }))), ...(verification ? describeVerification(verification) : {}) };
        break;
      }
      case 'finishSecret':
        await finishPending(rotation, token);
        metrics.addMetric(ROTATION_METRICS.rotationsSucceeded, MetricUnit.Count, 1);
        if (revocation) metrics.addMetric(ROTATION_METRICS.revocationsFinished, MetricUnit.Count, 1);
        break;
    }
  } catch (error) {
    outcome = 'failed';
    if (error instanceof RotationError && error.results.length > 0) {
      details = describeNodes(error.results);
      metrics.addMetric(ROTATION_METRICS.nodesUpdated, MetricUnit.Count, Number(details.nodesUpdated));
      metrics.addMetric(ROTATION_METRICS.nodesFailed, MetricUnit.Count, Number(details.nodesFailed));
      metrics.addMetric(ROTATION_METRICS.nodesSkipped, MetricUnit.Count, Number(details.nodesSkipped));
    }
    details.error = error instanceof Error ? error.message : String(error);
    metrics.addMetric(ROTATION_METRICS.rotationsFailed, MetricUnit.Count, 1);
    if (error instanceof RotationError || error instanceof PolicyError) throw new Error(`${step} failed: ${error.message}`);
    throw error;
  } finally {
    const durationMs = Date.now() - started;
    const kind = revocation ? { kind: 'revocation', requestedBy: revocation.requestedBy } : { kind: configurationTest ? 'configuration test' : 'rotation' };
    logger.info('rotation step', { step, secret: secretId, versionId: token, outcome, durationMs, ...kind, ...details });
    if (revocation && (step === 'finishSecret' || outcome === 'failed')) {
      logger.info('revocation', { step, secret: secretId, versionId: token, outcome, ...revocation, ...details });
    }
    const stepMetric = metrics.singleMetric();
    stepMetric.addDimension('Step', step);
    stepMetric.addMetric(ROTATION_METRICS.stepDuration, MetricUnit.Milliseconds, durationMs);
    metrics.publishStoredMetrics();
  }
}
