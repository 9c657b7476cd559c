import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { METRIC_NAMESPACE } from '../src/aws/contract.js';

/** A function's Powertools logger and metrics, under its service name (the contract's, which its alarms read). */
export function observability(serviceName: string): { logger: Logger; metrics: Metrics } {
  return { logger: new Logger({ serviceName }), metrics: new Metrics({ namespace: METRIC_NAMESPACE, serviceName }) };
}
