import { VERIFIER_TIMEOUT_SECONDS } from './contract.js';

/**
 * Settings for the AWS SDK clients the functions build. Throttling and transient errors are
 * retried with backoff; a call that gets no connection in 3 s or no answer in 10 s is abandoned
 * and retried too, rather than hanging until the function's own timeout (the SDK only warns
 * about a request timeout unless told to throw).
 */
export const AWS_CLIENT_CONFIG = { maxAttempts: 6, retryMode: 'standard', requestHandler: { connectionTimeout: 3_000, requestTimeout: 10_000, throwOnRequestTimeout: true } } as const;

/** The client that invokes the verifier synchronously waits as long as the verifier may run. */
export const VERIFIER_INVOKE_CLIENT_CONFIG = { ...AWS_CLIENT_CONFIG, requestHandler: { ...AWS_CLIENT_CONFIG.requestHandler, requestTimeout: (VERIFIER_TIMEOUT_SECONDS + 10) * 1000 } } as const;
