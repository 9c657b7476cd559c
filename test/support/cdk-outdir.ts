// Each App a test synthesizes writes its cloud assembly to CDK_OUTDIR, or else to a new
// directory in the temporary directory that nothing removes. One directory per test file, removed after it.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';

const outdir = mkdtempSync(join(tmpdir(), 'cdk-test-out-'));
process.env.CDK_OUTDIR = outdir;
afterAll(() => rmSync(outdir, { recursive: true, force: true }));
