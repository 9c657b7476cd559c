import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { LambdaClient } from '@aws-sdk/client-lambda';
import { SSMClient } from '@aws-sdk/client-ssm';
import { ROTATION_SERVICE } from '../src/aws/contract.js';
import { AWS_CLIENT_CONFIG, VERIFIER_INVOKE_CLIENT_CONFIG } from '../src/aws/clients.js';
import { runRotationStep, settingsFromEnvironment, type LambdaContext, type RotationEvent } from '../src/aws/rotation-function.js';
import { observability } from './observability.js';

const secrets = new SecretsManagerClient(AWS_CLIENT_CONFIG);
const ssm = new SSMClient(AWS_CLIENT_CONFIG);
const lambda = new LambdaClient(VERIFIER_INVOKE_CLIENT_CONFIG);
const { logger, metrics } = observability(ROTATION_SERVICE);
const settings = settingsFromEnvironment(process.env);

/** The Secrets Manager rotation function: one invocation per step. */
export const handler = (event: RotationEvent, context: LambdaContext): Promise<void> =>
  runRotationStep(event, context, { secrets, ssm, lambda, logger, metrics, settings });
