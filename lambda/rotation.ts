import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SSMClient } from '@aws-sdk/client-ssm';
import { runRotationStep, settingsFromEnvironment, type LambdaContext, type RotationEvent } from '../src/aws/rotation-function.js';

const SERVICE = 'tls-ticket-key-rotation';
// Throttling and transient errors are retried by the SDK's standard retry mode.
const secrets = new SecretsManagerClient({ maxAttempts: 6 });
const ssm = new SSMClient({ maxAttempts: 6 });
const logger = new Logger({ serviceName: SERVICE });
const metrics = new Metrics({ namespace: 'TlsTicketKeyRotation', serviceName: SERVICE });
const settings = settingsFromEnvironment(process.env);

/** The Secrets Manager rotation function: one invocation per step. */
export const handler = (event: RotationEvent, context: LambdaContext): Promise<void> =>
  runRotationStep(event, context, { secrets, ssm, logger, metrics, settings });
