/**
 * What the stack (lib/) and its two functions (lambda/, src/aws) agree on, in one module both
 * sides import: the environment each function is deployed with, the metrics each publishes
 * (the alarms and the dashboard read them by these names), its service name, and the verifier's
 * time limit.
 */
export const METRIC_NAMESPACE = 'TlsTicketKeyRotation';

export const ROTATION_SERVICE = 'tls-ticket-key-rotation';
export const VERIFIER_SERVICE = 'tls-ticket-key-verifier';

/** How long the verifier function may run (its Lambda timeout): the rotation function waits for it. */
export const VERIFIER_TIMEOUT_SECONDS = 300;

/** The rotation function's environment, by setting. */
export const ROTATION_ENVIRONMENT = {
  keyLength: 'KEY_LENGTH',
  serverFlavor: 'SERVER_FLAVOR',
  rotationIntervalSeconds: 'ROTATION_INTERVAL_SECONDS',
  ticketLifetimeSeconds: 'TICKET_LIFETIME_SECONDS',
  documentName: 'DOCUMENT_NAME',
  targetTagKey: 'TARGET_TAG_KEY',
  targetTagValue: 'TARGET_TAG_VALUE',
  maxConcurrency: 'MAX_CONCURRENCY',
  maxErrors: 'MAX_ERRORS',
  commandOutputLogGroup: 'COMMAND_OUTPUT_LOG_GROUP',
  verifierFunctionName: 'VERIFIER_FUNCTION_NAME',
  keyNamesParameter: 'KEY_NAMES_PARAMETER',
} as const;

/** The verifier function's environment, by setting. */
export const VERIFIER_ENVIRONMENT = {
  keyNamesParameter: 'KEY_NAMES_PARAMETER',
  ticketStoreSecretArn: 'TICKET_STORE_SECRET_ARN',
  targetTagKey: 'TARGET_TAG_KEY',
  targetTagValue: 'TARGET_TAG_VALUE',
  port: 'VERIFY_PORT',
  addresses: 'VERIFY_ADDRESSES',
  sni: 'VERIFY_SNI',
  staticNodes: 'VERIFY_STATIC_NODES',
  peersPerNode: 'VERIFY_PEERS_PER_NODE',
  capturedNodes: 'VERIFY_CAPTURED_NODES',
} as const;

/** What the rotation function publishes, under ROTATION_SERVICE. */
export const ROTATION_METRICS = {
  rotationsSucceeded: 'RotationsSucceeded',
  rotationsFailed: 'RotationsFailed',
  revocationsFinished: 'RevocationsFinished',
  nodesUpdated: 'NodesUpdated',
  nodesFailed: 'NodesFailed',
  nodesSkipped: 'NodesSkipped',
  stepDuration: 'StepDuration',
} as const;

/** What the verifier function publishes, under VERIFIER_SERVICE. */
export const VERIFIER_METRICS = {
  crossNodeResumptionRate: 'CrossNodeResumptionRate',
  continuityResumptionRate: 'ContinuityResumptionRate',
  nodesOnExpectedKey: 'NodesOnExpectedKey',
  nodesNotOnExpectedKey: 'NodesNotOnExpectedKey',
  unreachableNodes: 'UnreachableNodes',
  verificationFailures: 'VerificationFailures',
  verificationDuration: 'VerificationDuration',
  verifierErrors: 'VerifierErrors',
} as const;

export type RotationMetric = (typeof ROTATION_METRICS)[keyof typeof ROTATION_METRICS];
export type VerifierMetric = (typeof VERIFIER_METRICS)[keyof typeof VERIFIER_METRICS];
