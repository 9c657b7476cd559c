import { defineConfig } from 'vitest/config';

/**
 * The tests mutation testing runs against src/core: those that need no server (no nginx, no
 * HAProxy, no CLI process), so that each mutant is judged in seconds. `npm run mutation`.
 */
export default defineConfig({
  test: {
    include: [
      'test/unit/keyset.test.ts',
      'test/unit/keyset-validators.test.ts',
      'test/unit/core-parts.test.ts',
      'test/unit/policy.test.ts',
      'test/unit/schedule-jitter.test.ts',
      'test/unit/rotation-create.test.ts',
      'test/unit/rotation-core.test.ts',
      'test/unit/rotation-steps.test.ts',
      'test/fault/model.test.ts',
      'test/aws/rotation-handler.test.ts',
      'test/aws/ssm-fleet-commander.test.ts',
      'test/unit/file-secret-store.test.ts',
      'test/unit/nodes.test.ts',
    ],
    // The fault model's random interleavings: fewer per mutant than `npm test` runs (1,500).
    env: { MODEL_RUNS: '100' },
    // Synthesized apps write their cloud assembly in a directory removed after each file.
    setupFiles: ['./test/support/cdk-outdir.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
