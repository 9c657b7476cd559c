// The node applier's Python program, tested directly: its unit tests (applier/tests) run with
// the system's python3 as a node runs it, isolated (-I) and with no site packages (-S).
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { NODE_PATH } from '../src/local/applier.js';
import { PROJECT_ROOT } from '../src/project-root.js';

describe('the applier program (applier/ticket_keys)', () => {
  it('passes its unit tests', () => {
    const run = spawnSync('python3', ['-I', '-S', '-m', 'unittest', 'discover', '-s', 'applier/tests', '-t', 'applier', '-v'], {
      cwd: PROJECT_ROOT,
      encoding: 'utf8',
      env: { ...process.env, PATH: NODE_PATH, PYTHONDONTWRITEBYTECODE: '1' },
    });
    if (run.error) throw new Error(`python3 could not run (apt-get install python3): ${run.error.message}`);
    expect(run.stderr).toMatch(/^Ran (\d+) tests? in/m);
    expect(Number(/^Ran (\d+) tests? in/m.exec(run.stderr)?.[1])).toBeGreaterThanOrEqual(20);
    expect(run.status, run.stderr).toBe(0);
  });
});
