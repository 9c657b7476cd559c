import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { afterAll, describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../../src/project-root.js';

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

function snapshotTemplate(stack: string): Template {
  return Template.fromJSON(JSON.parse(readFileSync(join(SNAPSHOT, `${stack}.template.json`), 'utf8')) as Record<string, unknown>);
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
    const fleet = snapshotTemplate('TicketKeyRotationInteg');

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
      const assertions = JSON.stringify(snapshotTemplate('TicketKeyRotationIntegTestDefaultTestDeployAssertFC7E974D').toJSON());
      const count = (text: string): number => assertions.split(text).length - 1;
      expect(count('"Custom::DeployAssert@SdkCallSecretsManagerrotateSecret"')).toBe(2);
      expect(count('"Custom::DeployAssert@SdkCallLambdainvoke"')).toBe(2);
      expect(assertions).toContain('\\"generation\\":1');
      expect(assertions).toContain('\\"generation\\":2');
      expect(count('"Custom::DeployAssert@SdkCallCloudWatchLogsfilterLogEvents"')).toBe(7);
      expect(assertions).toContain('continuityResumed');
    });
  });
});
