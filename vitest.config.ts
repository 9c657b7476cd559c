import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Synthesized apps write their cloud assembly in a directory removed after each file.
    setupFiles: ['./test/support/cdk-outdir.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Integration tests start real nginx, HAProxy and Apache processes; two cores run them best one file at a time.
    fileParallelism: false,
    reporters: ['default', './test/support/plain-summary-reporter.ts'],
  },
});
