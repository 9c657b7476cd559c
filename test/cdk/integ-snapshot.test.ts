import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { afterAll, describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../../src/project-root.js';
import { cliCallsOf, embeddedFiles } from '../support/aws-calls.js';
import { Account, allowed, decisions, VIA_SECRETS_MANAGER, type Call } from '../support/iam-evaluator.js';
import { ACCOUNT, ResolvedTemplate } from '../support/template-resolver.js';

/**
 * The offline half of the integration test (test/integ/integ.ticket-key-rotation.ts): integ-runner
 * synthesizes it and compares it with its committed snapshot, as it does before every deploy.
 * A change that alters the deployed resources fails here until `npm run integ:snapshot`
 * records it on purpose. Asset hashes are left out of the comparison (integ-runner's default).
 * integ-runner runs the compiled test (scripts/integ-app.sh): `npm test` builds first; after an
 * edit, `npm run build` before running this file alone.
 */
const TEST_FILE = 'test/integ/integ.ticket-key-rotation.ts';
const SNAPSHOT = join(PROJECT_ROOT, `${TEST_FILE}.snapshot`);
const INTEG_RUNNER = join(PROJECT_ROOT, 'node_modules', '.bin', 'integ-runner');

function integRunner(args: string[]): { status: number | null; output: string } {
  const result = spawnSync(INTEG_RUNNER, ['--no-update-workflow', ...args], { cwd: PROJECT_ROOT, encoding: 'utf8', timeout: 180_000 });
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

const FLEET_STACK = 'TicketKeyRotationInteg';
const ASSERTION_STACK = 'TicketKeyRotationIntegTestDefaultTestDeployAssertFC7E974D';

function snapshotJson(stack: string): { Resources: Record<string, { Type: string; Properties?: Record<string, unknown> }> } {
  return JSON.parse(readFileSync(join(SNAPSHOT, `${stack}.template.json`), 'utf8')) as never;
}

function snapshotTemplate(stack: string): Template {
  return Template.fromJSON(snapshotJson(stack));
}

/** A template value with its intrinsics' literal strings joined: what user data says, token references aside. */
function literalText(value: unknown): string {
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) return value.map(literalText).join('');
  if (value !== null && typeof value === 'object') return Object.values(value).map(literalText).join('');
  return '';
}

describe('the integration test, offline', () => {
  const scratch: string[] = [];
  afterAll(() => {
    for (const dir of scratch) rmSync(dir, { recursive: true, force: true });
  });

  it('synthesizes and matches its committed snapshot (integ-runner, snapshot mode: no credentials, no deploy)', () => {
    const { status, output } = integRunner(['--config', 'integ.config.json']);
    expect(output).toContain('UNCHANGED  integ.ticket-key-rotation');
    expect(status, output).toBe(0);
  }, 200_000);

  it('fails when the deployed resources differ from the snapshot, naming the difference', () => {
    // The same test against a copy of its snapshot in which one node is another size.
    const dir = mkdtempSync(join(tmpdir(), 'integ-snapshot-'));
    scratch.push(dir);
    cpSync(join(PROJECT_ROOT, TEST_FILE), join(dir, 'integ.ticket-key-rotation.ts'));
    cpSync(SNAPSHOT, join(dir, 'integ.ticket-key-rotation.ts.snapshot'), { recursive: true });
    const templateFile = join(dir, 'integ.ticket-key-rotation.ts.snapshot', 'TicketKeyRotationInteg.template.json');
    writeFileSync(templateFile, readFileSync(templateFile, 'utf8').replace('"t4g.nano"', '"t4g.micro"'));
    const { status, output } = integRunner(['--directory', dir, '--app', `bash scripts/integ-app.sh ${TEST_FILE}`, '--test-regex', '^integ\\..*\\.ts$']);
    expect(status).toBe(1);
    expect(output).toContain('CHANGED    integ.ticket-key-rotation');
    expect(output).toMatch(/InstanceType.*\n.*t4g\.micro.*\n.*t4g\.nano/);
  }, 200_000);

  describe('what it deploys (from the snapshot)', () => {
    const fleet = snapshotTemplate(FLEET_STACK);

    it('costs cents: no NAT gateway, two of the smallest arm64 instances on Amazon Linux 2023', () => {
      fleet.resourceCountIs('AWS::EC2::NatGateway', 0);
      fleet.resourceCountIs('AWS::EC2::Instance', 2);
      fleet.allResourcesProperties('AWS::EC2::Instance', { InstanceType: 't4g.nano', Tags: Match.arrayWith([{ Key: 'TicketKeyIntegFleet', Value: 'integ' }]) });
      // Created only once its user data has run to the end (cfn-signal).
      fleet.allResources('AWS::EC2::Instance', { CreationPolicy: { ResourceSignal: { Timeout: 'PT15M' } } });
      expect(JSON.stringify(fleet.toJSON().Parameters)).toMatch(/"\/aws\/service\/ami-amazon-linux-latest\/al2023-ami-kernel-[^"]*-arm64"/);
      fleet.resourceCountIs('AWS::EC2::VPCEndpoint', 3);
    });

    it('gives both nodes nginx with one certificate, tickets on and the session cache off', () => {
      const userData = Object.values(fleet.findResources('AWS::EC2::Instance')).map((instance) => literalText((instance as { Properties: { UserData: unknown } }).Properties.UserData));
      expect(userData).toHaveLength(2);
      for (const text of userData) {
        for (const file of ['shared-certificate.sh', 'ticket-keys-integ.conf', 'setup-node.sh']) {
          expect(text).toContain(readFileSync(join(PROJECT_ROOT, 'test', 'integ', 'node', file), 'utf8'));
        }
        expect(text).toContain('cfn-signal');
      }
      expect(userData[0]?.replaceAll(/Node[12][0-9A-F]{8}/g, 'Node')).toBe(userData[1]?.replaceAll(/Node[12][0-9A-F]{8}/g, 'Node'));
    });

    it('starts no rotation but the test\'s own: none at deploy, and the schedule\'s first is 30 days away', () => {
      fleet.resourcePropertiesCountIs('AWS::SecretsManager::RotationSchedule', { RotateImmediatelyOnUpdate: false, RotationRules: Match.objectLike({ ScheduleExpression: 'rate(30 days)' }) }, 1);
      fleet.resourceCountIs('AWS::SecretsManager::RotationSchedule', 1);
    });

    it('starts the nodes once their subnet routes to the internet (dnf installs nginx)', () => {
      fleet.allResources('AWS::EC2::Instance', { DependsOn: Match.arrayWith([Match.stringLikeRegexp('^VpcPublicSubnet1DefaultRoute')]) });
    });

    it('runs the verifier in the VPC, and lets only it reach the nodes', () => {
      fleet.hasResourceProperties('AWS::Lambda::Function', { Description: Match.stringLikeRegexp('^Verifies by TLS handshakes'), VpcConfig: Match.objectLike({ SubnetIds: Match.anyValue() }) });
      const [nodeGroup] = Object.keys(fleet.findResources('AWS::EC2::SecurityGroup', { Properties: { GroupDescription: Match.stringLikeRegexp('^Integration fleet nodes') } }));
      expect(nodeGroup).toBeDefined();
      expect(fleet.toJSON().Resources[nodeGroup as string].Properties.SecurityGroupIngress).toBeUndefined();
      const ingress = Object.values(fleet.findResources('AWS::EC2::SecurityGroupIngress', { Properties: { GroupId: { 'Fn::GetAtt': [nodeGroup, 'GroupId'] } } }));
      expect(ingress).toHaveLength(1);
      expect(ingress[0]).toMatchObject({ Properties: { FromPort: 443, ToPort: 443, IpProtocol: 'tcp', SourceSecurityGroupId: { 'Fn::GetAtt': [expect.stringMatching(/VerifierSecurityGroup/), 'GroupId'] } } });
    });

    it('leaves nothing behind when destroyed: no resource is retained', () => {
      for (const [id, resource] of Object.entries(fleet.toJSON().Resources as Record<string, { DeletionPolicy?: string }>)) {
        expect([undefined, 'Delete'], id).toContain(resource.DeletionPolicy);
      }
      fleet.allResourcesProperties('AWS::KMS::Key', { PendingWindowInDays: 7 });
    });

    it('asserts two rotations: started, AWSCURRENT at generations 1 and 2, the verifier\'s proof and the audit log', () => {
      const assertions = JSON.stringify(snapshotTemplate(ASSERTION_STACK).toJSON());
      const count = (text: string): number => assertions.split(text).length - 1;
      expect(count('"Custom::DeployAssert@SdkCallSecretsManagerrotateSecret"')).toBe(2);
      expect(count('"Custom::DeployAssert@SdkCallLambdainvoke"')).toBe(2);
      expect(assertions).toContain('\\"generation\\":1');
      expect(assertions).toContain('\\"generation\\":2');
      expect(count('"Custom::DeployAssert@SdkCallCloudWatchLogsfilterLogEvents"')).toBe(7);
      expect(assertions).toContain('continuityResumed');
    });
  });
  it('carries no base64 but the applier\'s own files: no key material is ever committed', () => {
    for (const stack of [FLEET_STACK, ASSERTION_STACK]) {
      const template = snapshotJson(stack);
      const packedLines = new Set<string>();
      for (const document of Object.values(template.Resources).filter((resource) => resource.Type === 'AWS::SSM::Document')) {
        for (const step of (document.Properties?.Content as { mainSteps: { inputs: { runCommand: string[] } }[] }).mainSteps) {
          const lines = step.inputs.runCommand;
          for (const [name, content] of Object.entries(embeddedFiles(lines.join('\n')))) expect(content, name).toBe(readFileSync(join(PROJECT_ROOT, 'applier', name), 'utf8'));
          let heredocEnd: string | undefined;
          for (const line of lines) {
            if (heredocEnd === undefined) heredocEnd = /^base64 -d <<'(\w+)'/.exec(line)?.[1];
            else if (line === heredocEnd) heredocEnd = undefined;
            else packedLines.add(line);
          }
        }
      }
      // A run of base64 with +, / or = that is not a path: the applier's packed lines, and nothing else.
      const base64Runs = (JSON.stringify(template).match(/[A-Za-z0-9+/]{40,}={0,2}/g) ?? []).filter((run) => /[+/=]/.test(run) && !/^\/?[\w.-]+(\/[\w.-]+)+\/?$/.test(run));
      expect(base64Runs.filter((run) => ![...packedLines].some((line) => line.includes(run))), stack).toEqual([]);
      if (stack === FLEET_STACK) expect(packedLines.size).toBeGreaterThan(0);
    }
  });

  describe('who may do what in it (IAM, evaluated over the snapshot)', () => {
    const fleet = new ResolvedTemplate(snapshotJson(FLEET_STACK));
    const account = new Account(fleet);
    const role = account.arn('AWS::IAM::Role', 'NodeRole');
    const nodeSession = `arn:aws:sts::${ACCOUNT}:assumed-role/${role}/i-0123456789abcdef0`;
    // The tags the template puts on the role: what the key set's policies check.
    const roleTags = Object.fromEntries((fleet.one('AWS::IAM::Role', 'NodeRole').properties.Tags as { Key: string; Value: string }[]).map(({ Key, Value }) => [Key, Value]));
    // AmazonSSMManagedInstanceCore (the SSM agent's) grants no Secrets Manager or KMS action.
    const policies = account.identityPolicies(role, [], ['AmazonSSMManagedInstanceCore']);
    const seed = account.arn('AWS::SecretsManager::Secret', 'CertificateSeed');
    const keySet = account.arn('AWS::SecretsManager::Secret', 'TicketKeysKeySet');
    const key = account.arn('AWS::KMS::Key', 'TicketKeysKey', 'Arn');
    const read = (secret: string, stage?: string): Call => ({ action: 'secretsmanager:GetSecretValue', resource: secret, ...(stage ? { context: { 'secretsmanager:VersionStage': stage } } : {}) });
    /** What Secrets Manager asks KMS for a node's read: https://docs.aws.amazon.com/secretsmanager/latest/userguide/security-encryption.html */
    const decrypt: Call = { action: 'kms:Decrypt', resource: key, context: { ...VIA_SECRETS_MANAGER, 'kms:EncryptionContext:SecretARN': keySet, 'kms:EncryptionContext:SecretVersionId': '4c1f9b6e-2a0d-4f5e-9a52-0c8d4e6f7a81' } };

    it('lets a node read the certificate seed, the only AWS call of its user data, and nothing more of it', async () => {
      expect(cliCallsOf(readFileSync(join(PROJECT_ROOT, 'test', 'integ', 'node', 'setup-node.sh'), 'utf8'))).toEqual(['secretsmanager:GetSecretValue']);
      expect(await decisions(account, nodeSession, policies, [read(seed)], roleTags)).toEqual(allowed([read(seed)]));
      const more: Call[] = [{ action: 'secretsmanager:DescribeSecret', resource: seed }, { action: 'secretsmanager:PutSecretValue', resource: seed }];
      expect(await decisions(account, nodeSession, policies, more, roleTags)).toEqual(more.map((call) => `${call.action} ${call.resource}: ImplicitlyDenied`));
    });

    it('lets a node read the key set as onboarding and the rotation do, because its role carries the fleet tag; without it, the key set\'s policies deny', async () => {
      expect(roleTags).toEqual({ TicketKeyIntegFleet: 'integ' });
      const calls = [read(keySet, 'AWSCURRENT'), read(keySet, 'AWSPENDING'), decrypt];
      expect(await decisions(account, nodeSession, policies, calls, roleTags)).toEqual(allowed(calls));
      expect(await decisions(account, nodeSession, policies, calls)).toEqual(calls.map((call) => `${call.action} ${call.resource}: ExplicitlyDenied`));
    });
  });
});
