// Lambda bundles: the size of each handler bundle the stack deploys (built by cdk synth with the
// local esbuild, exactly as `cdk deploy` builds it) and its cold import time in a fresh Node process.
// Run: npm run bench -- bundles [--imports 7]
import { spawnSync } from 'node:child_process';
import { readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { App } from 'aws-cdk-lib';
import { TicketKeyRotationStack } from '../lib/ticket-key-rotation-stack.js';
import { machine, median, RESULTS_DIR, table, writeJson } from './common.js';

interface LambdaResource {
  Type: string;
  Properties: {
    Code?: { S3Key?: unknown }; Runtime?: string; Architectures?: string[]; Environment?: { Variables?: Record<string, unknown> } };
}


export async function bundlesBenchmark(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { imports: { type: 'string', default: '7' } } });
  const imports = Number(values.imports);
  // Inside the project, so that the bundles resolve @aws-sdk from node_modules as Lambda's runtime provides it.
  const outdir = join(RESULTS_DIR, 'cdk.out');
  rmSync(outdir, { recursive: true, force: true });
  try {
    await measure(outdir, imports);
  } finally {
    rmSync(outdir, { recursive: true, force: true });
  }
}

async function measure(outdir: string, imports: number): Promise<void> {
  const app = new App({ outdir });
  const stack = new TicketKeyRotationStack(app, 'BundleBench', { rotation: { targetTagKey: 'TicketKeyFleet', targetTagValue: 'bench' } });
  const synthStarted = Date.now();
  const template = app.synth().getStackByName(stack.stackName).template as { Resources: Record<string, LambdaResource> };
  const synthMs = Date.now() - synthStarted;
  // Lambda loads index.js as CommonJS; without this, the project's "type": "module" would apply.
  writeFileSync(join(outdir, 'package.json'), '{"type":"commonjs"}\n');
  const results = Object.entries(template.Resources)
    .filter(([id, resource]) => resource.Type === 'AWS::Lambda::Function' && /RotationFunction|VerifierFunction/.test(id))
    .map(([id, resource]) => {
      // The code's S3 key is the asset's hash, and cdk.out holds the bundle in asset.<hash>.
      const hash = String(resource.Properties.Code?.S3Key ?? '').replace(/\.zip$/, '');
      const assetDir = join(outdir, `asset.${hash}`);
      const files = readdirSync(assetDir);
      const entry = files.find((file) => /^index\.(m?js|cjs)$/.test(file));
      if (entry === undefined) throw new Error(`no index file in the asset of ${id}: ${files.join(', ')}`);
      // The handler reads its settings at import: give each variable the template's value, or a stand-in for a reference.
      const environment = Object.fromEntries(
        Object.entries(resource.Properties.Environment?.Variables ?? {}).map(([name, value]) => [name, typeof value === 'string' ? value : 'bench-stand-in']),
      );
      const url = pathToFileURL(join(assetDir, entry)).href;
      const times = Array.from({ length: imports }, () => {
        const run = spawnSync(
          process.execPath,
          ['--input-type=module', '-e', `const t = process.hrtime.bigint(); await import(${JSON.stringify(url)}); console.log(Number(process.hrtime.bigint() - t) / 1e6);`],
          { encoding: 'utf8', env: { ...process.env, AWS_REGION: 'eu-west-1', ...environment } },
        );
        if (run.status !== 0) throw new Error(`importing the ${id} bundle failed: ${run.stderr.trim()}`);
        return Number(run.stdout.trim());
      });
      return {
        function: id.replace(/^TicketKeys/, '').replace(/[0-9A-F]{8}$/, ''),
        runtime: resource.Properties.Runtime ?? '',
        architecture: resource.Properties.Architectures?.[0] ?? '',
        bundleBytes: files.reduce((sum, file) => sum + statSync(join(assetDir, file)).size, 0),
        coldImportMs: { median: median(times), min: Math.min(...times), max: Math.max(...times) },
      };
    });
  console.log(`Lambda bundles (cdk synth with the local esbuild: ${synthMs} ms); cold import in a fresh Node ${process.version} process, ${imports} runs`);
  console.log(
    table([
      ['function', 'runtime', 'arch', 'bundle (KiB)', 'import median (ms)', 'min', 'max'],
      ...results.map((result) => [
        result.function,
        result.runtime,
        result.architecture,
        (result.bundleBytes / 1024).toFixed(1),
        result.coldImportMs.median.toFixed(1),
        result.coldImportMs.min.toFixed(1),
        result.coldImportMs.max.toFixed(1),
      ]),
    ]),
  );
  console.log(`wrote ${writeJson('bundles.json', { machine: machine(), synthMs, imports, results })}`);
}
