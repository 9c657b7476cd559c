/** A setting the stack puts in a function's environment; its absence means the function was deployed some other way. */
export function requiredSetting(environment: Record<string, string | undefined>, name: string): string {
  const value = environment[name];
  if (value === undefined || value === '') throw new Error(`environment variable ${name} is not set: deploy the function with the stack's construct`);
  return value;
}
