// The node applier's Python program, tested directly: its unit tests (applier/tests) run with
// the system's python3 as a node runs it, isolated (-I) and with no site packages (-S); and its
// flavors are the TypeScript side's, with the same default commands.
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { FLAVORS, SERVER_FLAVORS, type Flavor } from '../../src/flavors/index.js';
import { NODE_PATH, runApplier } from '../../src/local/applier.js';
import { PROJECT_ROOT } from '../../src/project-root.js';

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

describe('one flavor list in both languages', () => {
  it('the applier knows exactly the flavors of src/flavors, with the same default commands', async () => {
    const help = await runApplier(['--help']);
    const usage = help.stderr;
    expect(usage).toContain(`--flavor ${SERVER_FLAVORS.join('|')} `);
    const defaults = (option: string): string => new RegExp(`${option} CMD[^(]*\\(default: ([^)]*)\\)`).exec(usage.replace(/\n\s+/g, ' '))?.[1] ?? '';
    const expected = (pick: (flavor: Flavor) => string): string => Object.values(FLAVORS).map((flavor) => `${flavor.name}: ${pick(flavor)}`).join('; ');
    expect(defaults('--test-cmd')).toBe(expected((flavor) => flavor.commands.test));
    expect(defaults('--config-dump-cmd')).toBe(expected((flavor) => flavor.commands.configDump));
    expect(defaults('--reload-cmd')).toBe(expected((flavor) => flavor.commands.reload));
    const unknown = await runApplier(['--flavor', 'lighttpd', '--key-dir', '/run/x', '--include', '/run/x/k']);
    expect(unknown.exitCode).toBe(2);
    expect(unknown.summary.error).toBe(`flavor lighttpd is not supported: use ${SERVER_FLAVORS.map((name) => `--flavor ${name}`).join(' or ')}`);
  });
});
