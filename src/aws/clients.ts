/** Settings for every AWS SDK client the functions build: throttling and transient errors are retried with backoff. */
export const AWS_CLIENT_CONFIG = { maxAttempts: 6, retryMode: 'standard' } as const;
