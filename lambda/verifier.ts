import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { EC2Client } from '@aws-sdk/client-ec2';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SSMClient } from '@aws-sdk/client-ssm';
import { METRIC_NAMESPACE, VERIFIER_SERVICE } from '../src/aws/contract.js';
import { AWS_CLIENT_CONFIG } from '../src/aws/clients.js';
import { runVerifier, verifierSettingsFromEnvironment, type VerifierEvent, type VerifierResponse } from '../src/aws/verifier-function.js';

const ec2 = new EC2Client(AWS_CLIENT_CONFIG);
const secrets = new SecretsManagerClient(AWS_CLIENT_CONFIG);
const ssm = new SSMClient(AWS_CLIENT_CONFIG);
const logger = new Logger({ serviceName: VERIFIER_SERVICE });
const metrics = new Metrics({ namespace: METRIC_NAMESPACE, serviceName: VERIFIER_SERVICE });
const settings = verifierSettingsFromEnvironment(process.env);

/** The verifier: called by the rotation function (capture, verify) and on a schedule (canary). */
export const handler = (event: VerifierEvent): Promise<VerifierResponse> => runVerifier(event, { ec2, secrets, ssm, logger, metrics, settings });
