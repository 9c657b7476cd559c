import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { LambdaClient } from '@aws-sdk/client-lambda';
import { SSMClient } from '@aws-sdk/client-ssm';
import { METRIC_NAMESPACE, ROTATION_SERVICE } from '../src/aws/contract.js';
import { AWS_CLIENT_CONFIG, VERIFIER_INVOKE_CLIENT_CONFIG } from '../src/aws/clients.js';
import { runRotationStep, settingsFromEnvironment, type LambdaContext, type RotationEvent } from '../src/aws/rotation-function.js';

const secrets = new SecretsManagerClient(AWS_CLIENT_CONFIG);
const ssm = new SSMClient(AWS_CLIENT_CONFIG);
const lambda = new LambdaClient(VERIFIER_INVOKE_CLIENT_CONFIG);
const logger = new Logger({ serviceName: ROTATION_SERVICE });
const metrics = new Metrics({ namespace: METRIC_NAMESPACE, serviceName: ROTATION_SERVICE });
const settings = settingsFromEnvironment(process.env);

/** The Secrets Manager rotation function: one invocation per step. */
export const handler = (event: RotationEvent, context: LambdaContext): Promise<void> =>
  runRotationStep(event, context, { secrets, ssm, lambda, logger, metrics, settings });
