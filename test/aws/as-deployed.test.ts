import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { currentKey, EMPTY_KEY_SET_PLACEHOLDER, parseKeySet } from '../../src/core/keyset.js';
import { startLocalFleet, type FleetNode, type LocalFleet } from '../../src/local/fleet.js';
import { DEFAULT_KEY_DIRECTORY } from '../../lib/ticket-key-rotation.js';
import { NGINX } from '../../src/flavors/nginx.js';
import { TicketKeyRotationStack } from '../../lib/ticket-key-rotation-stack.js';
import { deployRotationSchedule, FakeParameter, FakeSecret } from '../support/aws-fakes.js';
import { PROJECT } from '../support/aws-calls.js';
import { writeAwsCliStub, writeStubSecret } from '../support/aws-cli-stub.js';
import { captureStdout, expectNoMaterial, logLines, freshTicket } from '../support/helpers.js';
import { lambdaContext } from '../support/lambda-context.js';
import { fakeDocument, interpolate, mockRunCommand, RunCommandFake, type ManagedNode, type RunOutput } from '../support/run-command-fake.js';
import { REGION, ResolvedTemplate } from '../support/template-resolver.js';

/**
 * The functions as `cdk deploy` ships them: the app is synthesized, each function's bundle is
 * loaded from the cloud assembly (the asset its template's S3Key names) with exactly the
 * environment its template gives it, and a whole rotation runs through them against the
 * stateful fakes. SendCommand runs the template's own document on real nginx nodes. What this
 * catches is the wiring between the template and the code: variable, document and parameter names.
 */

type Handler = (event: unknown, context: unknown) => Promise<unknown>;

/** The instance id the fake gives a local node. */
const instanceIdOf = (node: FleetNode): string => `i-0${node.name.replace(/\D/g, '').padStart(16, '0')}`;
type Sdk = Record<string, new (...args: never[]) => unknown>;

const execute = promisify(execFile);

/**
 * Variables the Lambda runtime sets in every function's environment besides the function's own
 * (https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html#configuration-envvars-runtime).
 */
function runtimeEnvironment(functionName: string, memory: number): Record<string, string> {
  return {
    AWS_REGION: REGION,
    AWS_DEFAULT_REGION: REGION,
    AWS_LAMBDA_FUNCTION_NAME: functionName,
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(memory),
    AWS_LAMBDA_FUNCTION_VERSION: '$LATEST',
    AWS_EXECUTION_ENV: 'AWS_Lambda_nodejs24.x',
    AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE',
    AWS_SECRET_ACCESS_KEY: 'not-a-secret',
    AWS_SESSION_TOKEN: 'not-a-token',
  };
}

describe('the functions as deployed: bundles from the cloud assembly, the template\'s environment and document', () => {
  let fleet: LocalFleet;
  let outdir: string;
  let resolved: ResolvedTemplate;
  let rotation: Handler;
  let verifier: Handler;
  let secret: FakeSecret;
  let ticketStore: FakeSecret;
  let keyNames: FakeParameter;
  let runCommand: RunCommandFake;
  let verifierName: string;
  let documentScript: string;
  const output: string[] = [];
  const mocks: { restore(): void }[] = [];
  const savedEnvironment = { ...process.env };

  /** A document's script as one node runs it: the stack's node settings swapped for this local node's. */
  const withNodeSettings = (documentText: string, node: FleetNode, withReload = true): string => {
    let script = documentText;
    const swap = (flag: string, stackValue: string, nodeValue: string) => {
      const from = `'${flag}' '${stackValue}'`;
      expect(script.split(from), `${flag} in the document`).toHaveLength(2);
      script = script.replace(from, `'${flag}' '${nodeValue}'`);
    };
    swap('--key-dir', DEFAULT_KEY_DIRECTORY, node.keyDir);
    swap('--include', `${DEFAULT_KEY_DIRECTORY}/${NGINX.includeFileName}`, node.includeFile);
    swap('--test-cmd', NGINX.commands.test, node.testCommand);
    swap('--config-dump-cmd', NGINX.commands.configDump, node.configDumpCommand);
    if (withReload) swap('--reload-cmd', NGINX.commands.reload, node.reloadCommand);
    return script;
  };
  const scriptFor = (node: FleetNode): string => withNodeSettings(documentScript, node);

  /** What the node's role could read right now, for the stub AWS CLI. */
  const grantRead = (stubDir: string): void =>
    writeStubSecret(stubDir, { arn: secret.arn, versions: secret.values, stages: { AWSCURRENT: secret.holder('AWSCURRENT'), AWSPENDING: secret.holder('AWSPENDING') } });
  const stubDirOf = (node: FleetNode): string => join(fleet.memoryDir, `aws-stub-${node.name}`);
  const nodeEnvironment = (stubDir: string) => ({ PATH: `${stubDir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`, HOME: stubDir });

  const runOn = (node: FleetNode, stubDir: string) => async (_document: string, parameters: Record<string, string>): Promise<RunOutput> => {
    grantRead(stubDir);
    const script = join(stubDir, `run-${Date.now()}.sh`);
    writeFileSync(script, interpolate(scriptFor(node), parameters), { mode: 0o700 });
    try {
      const { stdout, stderr } = await execute('sh', [script], { env: nodeEnvironment(stubDir) });
      return { stdout, stderr, exitCode: 0 };
    } catch (error) {
      const failed = error as { stdout?: string; stderr?: string; code?: number };
      return { stdout: failed.stdout ?? '', stderr: failed.stderr ?? '', exitCode: typeof failed.code === 'number' ? failed.code : 1 };
    } finally {
      rmSync(script, { force: true });
    }
  };

  /** Loads a function's bundle as Lambda would: the asset its S3Key names, under the template's environment. */
  const load = (prefix: string): { handler: Handler; name: string; bundle: string } => {
    const { id, properties } = resolved.one('AWS::Lambda::Function', prefix);
    const hash = String((properties.Code as { S3Key: string }).S3Key).replace(/\.zip$/, '');
    const assets = JSON.parse(readFileSync(join(outdir, 'TicketKeyRotation.assets.json'), 'utf8')) as { files: Record<string, { source: { path: string } }> };
    const bundle = join(outdir, assets.files[hash]!.source.path, String(properties.Handler).split('.')[0] + '.js');
    const name = resolved.ref(id);
    const variables = (properties.Environment as { Variables: Record<string, string> }).Variables;
    for (const key of Object.keys(process.env)) if (!(key in savedEnvironment)) Reflect.deleteProperty(process.env, key);
    Object.assign(process.env, runtimeEnvironment(name, Number(properties.MemorySize)), variables);
    const handler = (createRequire(import.meta.url)(bundle) as Record<string, Handler>)[String(properties.Handler).split('.')[1]!]!;
    return { handler, name, bundle };
  };

  beforeAll(async () => {
    fleet = await startLocalFleet({ nodeCount: 3 });
    // Inside the project, so that the bundles find the SDK they leave out (Lambda's runtime provides it).
    mkdirSync(join(PROJECT, 'node_modules', '.cache'), { recursive: true });
    outdir = mkdtempSync(join(PROJECT, 'node_modules', '.cache', 'as-deployed-'));
    const app = new App({ outdir });
    new TicketKeyRotationStack(app, 'TicketKeyRotation', {
      // Static nodes named by instance id, so that the rotation and the verifier speak of one node.
      rotation: { targetTagKey: 'TicketKeyFleet', targetTagValue: 'edge', verifierStaticNodes: fleet.nodes.map((node) => `${instanceIdOf(node)}=${node.host}:${node.port}`) },
    });
    const assembly = app.synth();
    resolved = new ResolvedTemplate(Template.fromJSON(assembly.getStackByName('TicketKeyRotation').template as Record<string, unknown>).toJSON() as never);

    secret = new FakeSecret(EMPTY_KEY_SET_PLACEHOLDER, resolved.ref(resolved.one('AWS::SecretsManager::Secret', 'TicketKeysKeySet').id));
    ticketStore = new FakeSecret('{}', resolved.ref(resolved.one('AWS::SecretsManager::Secret', 'TicketKeysTicketStore').id));
    const document = resolved.one('AWS::SSM::Document', 'TicketKeysNodeApplier');
    const content = document.properties.Content as Parameters<typeof fakeDocument>[0] & { mainSteps: { inputs: { runCommand: string[] } }[] };
    documentScript = content.mainSteps[0]!.inputs.runCommand.join('\n');
    const nodes: ManagedNode[] = fleet.nodes.map((node) => {
      const stubDir = stubDirOf(node);
      mkdirSync(stubDir, { recursive: true, mode: 0o700 });
      writeAwsCliStub(stubDir);
      return { instanceId: instanceIdOf(node), tags: { TicketKeyFleet: 'edge' }, pingStatus: 'Online', run: runOn(node, stubDir) };
    });
    runCommand = new RunCommandFake({ [resolved.ref(document.id)]: fakeDocument(content) }, nodes);

    const verifierFunction = load('TicketKeysVerifierFunction');
    verifier = verifierFunction.handler;
    verifierName = verifierFunction.name;
    const rotationFunction = load('TicketKeysRotationFunction');
    rotation = rotationFunction.handler;

    // The bundles require the SDK's CommonJS build: mock those classes.
    const sdk = (name: string) => createRequire(rotationFunction.bundle)(name) as Sdk;
    const sm = sdk('@aws-sdk/client-secrets-manager');
    const secrets = mockClient(sm.SecretsManagerClient as never);
    type SecretInput = { SecretId?: string };
    const byId = (input: SecretInput): FakeSecret => {
      const found = [secret, ticketStore].find((candidate) => candidate.arn === input.SecretId);
      if (found === undefined) throw new (sm.ResourceNotFoundException as new (options: unknown) => Error)({ message: "Secrets Manager can't find the specified secret.", $metadata: {} });
      return found;
    };
    secrets.on(sm.DescribeSecretCommand as never).callsFake((input: SecretInput) => byId(input).describe());
    secrets.on(sm.GetSecretValueCommand as never).callsFake((input: SecretInput) => byId(input).get(input as never));
    secrets.on(sm.PutSecretValueCommand as never).callsFake((input: SecretInput) => byId(input).put(input as never));
    secrets.on(sm.UpdateSecretVersionStageCommand as never).callsFake((input: SecretInput) => byId(input).update(input as never));
    secrets.on(sm.ListSecretVersionIdsCommand as never).callsFake((input: SecretInput) => byId(input).listVersionIds(input as never));
    const ssm = mockRunCommand(runCommand, sdk('@aws-sdk/client-ssm') as never);
    keyNames = new FakeParameter(resolved.ref(resolved.one('AWS::SSM::Parameter', 'TicketKeysKeyNames').id), String(resolved.one('AWS::SSM::Parameter', 'TicketKeysKeyNames').properties.Value));
    keyNames.mock(ssm, sdk('@aws-sdk/client-ssm') as never);
    const lambdaSdk = sdk('@aws-sdk/client-lambda');
    const lambda = mockClient(lambdaSdk.LambdaClient as never);
    // Invoke (RequestResponse): the function's result as the payload; a thrown error as FunctionError
    // with errorMessage in the payload (https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html).
    lambda.on(lambdaSdk.InvokeCommand as never).callsFake(async (input: { FunctionName?: string; Payload?: Uint8Array }) => {
      if (input.FunctionName !== verifierName) throw new Error(`ResourceNotFoundException: Function not found: ${input.FunctionName}`);
      const event = JSON.parse(new TextDecoder().decode(input.Payload)) as unknown;
      try {
        return { StatusCode: 200, Payload: new TextEncoder().encode(JSON.stringify(await verifier(event, lambdaContext(300, verifierName)))) };
      } catch (error) {
        return { StatusCode: 200, FunctionError: 'Unhandled', Payload: new TextEncoder().encode(JSON.stringify({ errorType: 'Error', errorMessage: (error as Error).message })) };
      }
    });
    mocks.push(secrets, ssm, lambda);
    captureStdout(output);
  });

  afterAll(async () => {
    vi.restoreAllMocks();
    for (const mock of mocks) mock.restore();
    for (const key of Object.keys(process.env)) if (!(key in savedEnvironment)) Reflect.deleteProperty(process.env, key);
    Object.assign(process.env, savedEnvironment);
    if (outdir !== undefined) rmSync(outdir, { recursive: true, force: true });
    await fleet?.stop();
  });

  const step = async (Step: string, token: string): Promise<void> => {
    await rotation({ Step, SecretId: secret.arn, ClientRequestToken: token }, lambdaContext(900, 'rotation'));
  };
  const canary = async (when: string) => {
    const report = (await verifier({ action: 'canary' }, lambdaContext(300, verifierName))) as { ok?: boolean; skipped?: string; failures?: { detail: string }[] };
    expect(report.failures?.map((failure) => failure.detail) ?? [], `canary ${when}`).toEqual([]);
    expect(report.ok ?? report.skipped !== undefined, `canary ${when}`).toBe(true);
    return report;
  };
  const stepLines = () => logLines(output, 'rotation step');

  it('deploys with a configuration test, then rotates twice on real nginx; the canary passes before, between and after every step', async () => {
    const schedule = resolved.one('AWS::SecretsManager::RotationSchedule', 'TicketKeysKeySetRotation').properties;
    await deployRotationSchedule(schedule, secret, step);
    expect(runCommand.commands).toEqual([]);
    expect(await canary('after the deploy')).toMatchObject({ skipped: expect.stringContaining('no keys yet') });

    for (const generation of [1, 2]) {
      const token = secret.startRotation();
      for (const name of ['createSecret', 'setSecret', 'testSecret', 'finishSecret']) {
        await step(name, token);
        await canary(`after ${name} of generation ${generation}`);
      }
      expect(secret.currentGeneration()).toBe(generation);
      const current = parseKeySet(secret.get({ VersionStage: 'AWSCURRENT' }).SecretString);
      for (const node of fleet.nodes) expect((await freshTicket(node, 'TLSv1.3')).keyName).toBe(currentKey(current).name);
    }
    const lines = stepLines();
    expect(lines.map((line) => [line.step, line.kind, line.outcome, line.generation ?? null])).toEqual([
      ['testSecret', 'configuration test', 'succeeded', null],
      ['createSecret', 'rotation', 'succeeded', 1],
      ['setSecret', 'rotation', 'succeeded', null],
      ['testSecret', 'rotation', 'succeeded', null],
      ['finishSecret', 'rotation', 'succeeded', null],
      ['createSecret', 'rotation', 'succeeded', 2],
      ['setSecret', 'rotation', 'succeeded', null],
      ['testSecret', 'rotation', 'succeeded', null],
      ['finishSecret', 'rotation', 'succeeded', null],
    ]);
    // The second rotation's testSecret resumed the tickets captured before it on every node.
    expect(lines[7]).toMatchObject({ nodesUpdated: 3, continuityTried: 18, continuityResumed: 18 });
    // Each command went to the template's document, with parameters it accepts.
    for (const command of runCommand.commands) expect(Object.keys(command.parameters).sort()).toEqual(['Action', 'SecretId', 'VersionId']);
    const sets = [...secret.values.values()].filter((value) => value !== EMPTY_KEY_SET_PLACEHOLDER).map((value) => parseKeySet(value));
    expectNoMaterial(output.join('\n'), sets);
  });

  it('a node that keeps serving while its SSM agent is disconnected: one rotation goes on without it, the next is held by the gate on the wire, and after it is back both finish', async () => {
    const before = secret.currentGeneration();
    const disconnected = runCommand.nodes[2]!;
    const node = fleet.nodes[2]!;
    disconnected.pingStatus = 'ConnectionLost';
    const rotateAll = async (token: string) => {
      for (const name of ['createSecret', 'setSecret', 'testSecret', 'finishSecret']) await step(name, token);
    };
    await rotateAll(secret.startRotation());
    expect(secret.currentGeneration()).toBe(before + 1);
    expect(stepLines().filter((line) => line.step === 'setSecret').at(-1)).toMatchObject({ nodesSkipped: 1, skippedNodes: `${disconnected.instanceId}: not connected to SSM (PingStatus ConnectionLost)` });
    // One generation behind, it still resumes with the rest; two would not: the gate sees it on the wire.
    const held = secret.startRotation();
    await step('createSecret', held);
    await expect(step('setSecret', held)).rejects.toThrow(new RegExp(`gate closed: ${instanceIdOf(node)} \\(not reachable through SSM, and it still serves tickets under [0-9a-f]{32}, a key of an older set\\)`));
    expect(secret.currentGeneration()).toBe(before + 1);
    // Back online, the association brings it to AWSCURRENT; Secrets Manager's retry then finishes.
    disconnected.pingStatus = 'Online';
    const association = runCommand.sendCommand({ DocumentName: runCommand.commands[0]!.documentName, Targets: [{ Key: 'tag:TicketKeyFleet', Values: ['edge'] }], Parameters: { SecretId: [secret.arn] } });
    await expect.poll(() => runCommand.listCommands({ CommandId: association.Command.CommandId }).Commands[0]!.Status, { timeout: 30_000, interval: 500 }).toBe('Success');
    for (const name of ['setSecret', 'testSecret', 'finishSecret']) await step(name, held);
    expect(secret.currentGeneration()).toBe(before + 2);
    await canary('after the node came back');
  });

  it('the onboarding document as deployed installs the boot-time fetch: a node stopped through a rotation and rebooted starts on AWSCURRENT, read with its own role', async () => {
    const node = fleet.nodes[0]!;
    const managed = runCommand.nodes[0]!;
    const stubDir = stubDirOf(node);
    const systemd = mkdtempSync(join(fleet.baseDir, 'systemd-'));
    const installDir = mkdtempSync(join(fleet.baseDir, 'lib-'));
    const content = resolved.one('AWS::SSM::Document', 'TicketKeysNodeOnboarding').properties.Content as { mainSteps: { inputs: { runCommand: string[] } }[] };
    const onboarding = withNodeSettings(content.mainSteps[0]!.inputs.runCommand.join('\n'), node, false).replace(
      '--config "$config"',
      `--config "$config" '--systemd-dir' '${systemd}' '--install-dir' '${installDir}' '--tmpfiles-dir' 'none'`,
    );
    const onboardingScript = join(stubDir, 'onboarding.sh');
    writeFileSync(onboardingScript, interpolate(onboarding, { ConfigFile: node.configFile }), { mode: 0o700 });
    const onboarded = await execute('sh', [onboardingScript], { env: nodeEnvironment(stubDir) });
    rmSync(onboardingScript);
    expect(JSON.parse(onboarded.stdout)).toMatchObject({ action: 'unchanged', exitCode: 0 });
    expect(readFileSync(join(systemd, 'nginx.service.d', 'tls-ticket-keys.conf'), 'utf8')).toContain(`ExecStartPre=/bin/bash ${installDir}/before-start-nginx.sh\n`);

    // The instance stops: the next rotation skips it.
    await fleet.stopNode(node);
    managed.stopped = true;
    const before = secret.currentGeneration();
    const token = secret.startRotation();
    for (const name of ['createSecret', 'setSecret', 'testSecret', 'finishSecret']) await step(name, token);
    expect(secret.currentGeneration()).toBe(before + 1);

    // It boots: the key directory (tmpfs) is empty, and systemd runs the drop-in before nginx.
    rmSync(node.keyDir, { recursive: true, force: true });
    grantRead(stubDir);
    const boot = await execute('/bin/bash', [join(installDir, 'before-start-nginx.sh')], { env: nodeEnvironment(stubDir) });
    expect(JSON.parse(boot.stdout)).toMatchObject({ action: 'prepared', keySource: 'store', generation: before + 1 });
    expect(await fleet.startNode(node)).toMatchObject({ keySource: 'kept', generation: before + 1 });
    managed.stopped = false;
    const current = parseKeySet(secret.get({ VersionStage: 'AWSCURRENT' }).SecretString);
    expect((await freshTicket(node, 'TLSv1.3')).keyName).toBe(currentKey(current).name);
    // No association ran, and the gate lets the next rotation through.
    const next = secret.startRotation();
    for (const name of ['createSecret', 'setSecret', 'testSecret', 'finishSecret']) await step(name, next);
    expect(secret.currentGeneration()).toBe(before + 2);
    await canary('after the rebooted node started');
  });
});
