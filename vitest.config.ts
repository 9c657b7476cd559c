import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Integration tests start real nginx, HAProxy and Apache processes; two cores run them best one file at a time.
    fileParallelism: false,
    reporters: ['default', './test/support/plain-summary-reporter.ts'],
  },
});
