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
