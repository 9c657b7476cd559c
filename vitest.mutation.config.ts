import { defineConfig } from 'vitest/config';

/**
 * The tests mutation testing runs against src/core: those that need no server (no nginx, no
 * HAProxy, no CLI process), so that each mutant is judged in seconds. `npm run mutation`.
 */
export default defineConfig({
  test: {
    include: [
      'test/keyset.test.ts',
      'test/keyset-validators.test.ts',
      'test/core-parts.test.ts',
      'test/policy.test.ts',
      'test/schedule-jitter.test.ts',
      'test/rotation-create.test.ts',
      'test/rotation-core.test.ts',
      'test/rotation-steps.test.ts',
      'test/fault-model.test.ts',
      'test/rotation-handler.test.ts',
      'test/ssm-fleet-commander.test.ts',
      'test/file-secret-store.test.ts',
      'test/nodes.test.ts',
    ],
    // The fault model's random interleavings: fewer per mutant than `npm test` runs (1,500).
    env: { MODEL_RUNS: '100' },
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
