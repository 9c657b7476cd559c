import { EC2Client } from '@aws-sdk/client-ec2';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SSMClient } from '@aws-sdk/client-ssm';
import { VERIFIER_SERVICE } from '../src/aws/contract.js';
import { AWS_CLIENT_CONFIG } from '../src/aws/clients.js';
import { runVerifier, verifierSettingsFromEnvironment, type VerifierEvent, type VerifierResponse } from '../src/aws/verifier-function.js';
import { observability } from './observability.js';

const ec2 = new EC2Client(AWS_CLIENT_CONFIG);
const secrets = new SecretsManagerClient(AWS_CLIENT_CONFIG);
const ssm = new SSMClient(AWS_CLIENT_CONFIG);
const { logger, metrics } = observability(VERIFIER_SERVICE);
const settings = verifierSettingsFromEnvironment(process.env);

/** The verifier: called by the rotation function (capture, verify) and on a schedule (canary). */
export const handler = (event: VerifierEvent): Promise<VerifierResponse> => runVerifier(event, { ec2, secrets, ssm, logger, metrics, settings });
