import { vi } from 'vitest';

/**
 * A Lambda context as the Node.js runtime gives one: getRemainingTimeInMillis() "returns the
 * number of milliseconds left before the execution times out", so it falls as the invocation
 * runs (https://docs.aws.amazon.com/lambda/latest/dg/nodejs-context.html). The invocation's
 * end is fixed when it starts: `timeoutSeconds` from now, on whatever clock Date.now() reads
 * (vitest's fake timers included).
 */
export interface TestLambdaContext {
  functionName: string;
  awsRequestId: string;
  getRemainingTimeInMillis(): number;
}

export function lambdaContext(timeoutSeconds: number, functionName = 'test-function'): TestLambdaContext {
  const end = Date.now() + timeoutSeconds * 1000;
  return {
    functionName,
    awsRequestId: `request-${end}`,
    getRemainingTimeInMillis: () => Math.max(0, end - Date.now()),
  };
}

/**
 * Runs an invocation to its end on vitest's fake timers (Date and setTimeout faked), moving the
 * clock on `stepMs` at a time while it waits: minutes of polling pass in milliseconds.
 */
export async function onFakeClock<T>(invocation: Promise<T>, stepMs = 1_000): Promise<T> {
  let settled = false;
  const tracked = invocation.finally(() => {
    settled = true;
  });
  tracked.catch(() => undefined);
  while (!settled) await vi.advanceTimersByTimeAsync(stepMs);
  return tracked;
}

/** The timers onFakeClock needs faked; everything else (I/O, child processes) runs for real. */
export const FAKE_CLOCK: Parameters<typeof vi.useFakeTimers>[0] = { toFake: ['Date', 'setTimeout', 'clearTimeout'] };
