import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App, Aspects, Duration } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { beforeAll, describe, expect, it } from 'vitest';
import { EMPTY_KEY_SET_PLACEHOLDER } from '../../src/core/keyset.js';
import { propsFromContext } from '../../lib/settings.js';
import { APPLIER_DIR, applierFiles, onboardingFiles } from '../../src/project-paths.js';
import { SERVER_FLAVORS } from '../../src/flavors/index.js';
import { TicketKeyRotationStack } from '../../lib/ticket-key-rotation-stack.js';
import type { TicketKeyRotationProps } from '../../lib/ticket-key-rotation.js';
import { SECRET_ARN_PATTERN, VERSION_ID_PATTERN } from '../../lib/node-applier-document.js';
import { ROTATION_ENVIRONMENT, VERIFIER_ENVIRONMENT } from '../../src/aws/contract.js';
import { embeddedFiles } from '../support/aws-calls.js';
import { REGION, ResolvedTemplate } from '../support/template-resolver.js';

const FLEET = { targetTagKey: 'TicketKeyFleet', targetTagValue: 'edge' };

function synth(props: Partial<TicketKeyRotationProps> = {}, nag = false): { app: App; stack: TicketKeyRotationStack; template: Template } {
  const app = new App();
  const stack = new TicketKeyRotationStack(app, 'TicketKeyRotation', { rotation: { ...FLEET, ...props } });
  if (nag) Aspects.of(app).add(new AwsSolutionsChecks({ verbose: true }));
  const template = Template.fromStack(stack);
  return { app, stack, template };
}

/** The properties of the one resource of `type` whose logical id starts with TicketKeys<name>. */
/** Files of applier/ by their path there, as a document must carry them. */
function sources(files: string[]): Record<string, string> {
  expect(files).toContain('ticket_keys/__main__.py');
  return Object.fromEntries(files.map((file) => [file, readFileSync(join(APPLIER_DIR, file), 'utf8')]));
}

function resource(template: Template, type: string, name: string): Record<string, unknown> {
  const matches = Object.entries(template.findResources(type)).filter(([id]) => id.startsWith(`TicketKeys${name}`));
  expect(matches.map(([id]) => id), `${type} ${name}`).toHaveLength(1);
  return (matches[0]![1] as { Properties: Record<string, unknown> }).Properties;
}

/**
 * What starts rotations after CloudFormation deploys `templates` one after another. Secrets
 * Manager's own schedule follows RotationSchedule's RotationRules, but removing them leaves the
 * schedule running (https://github.com/aws/aws-cdk/issues/27460; CloudFormation: "the previously
 * scheduled rotation might still occur",
 * https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-properties-secretsmanager-rotationschedule-rotationrules.html).
 * With AutomaticallyAfterDays the next date counts from the previous rotation
 * (https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_RotationRulesType.html),
 * so a Scheduler that rotates more often keeps it from ever firing. A Scheduler schedule starts
 * rotations while its resource exists.
 */
function rotationStartsAfter(templates: Template[]): string[] {
  let rules: { ScheduleExpression?: string; AutomaticallyAfterDays?: number } | undefined;
  let scheduler: string | undefined;
  for (const template of templates) {
    const [schedule] = Object.values(template.findResources('AWS::SecretsManager::RotationSchedule')) as { Properties: { RotationRules?: typeof rules } }[];
    rules = schedule!.Properties.RotationRules ?? rules;
    const starters = Object.values(template.findResources('AWS::Scheduler::Schedule')) as { Properties: { ScheduleExpression: string; Target: { Arn: unknown } } }[];
    scheduler = starters.find((starter) => JSON.stringify(starter.Properties.Target.Arn).includes(':aws-sdk:secretsmanager:rotateSecret'))?.Properties.ScheduleExpression;
  }
  const starts: string[] = [];
  const schedulerSeconds = scheduler === undefined ? Infinity : Number(/rate\((\d+) minutes\)/.exec(scheduler)![1]) * 60;
  if (rules?.ScheduleExpression !== undefined) starts.push(`Secrets Manager ${rules.ScheduleExpression}`);
  else if (rules?.AutomaticallyAfterDays !== undefined && rules.AutomaticallyAfterDays * 86_400 <= schedulerSeconds) starts.push(`Secrets Manager every ${rules.AutomaticallyAfterDays} days`);
  if (scheduler !== undefined) starts.push(`Scheduler ${scheduler}`);
  return starts;
}

describe('the CDK stack', () => {
  let template: Template;
  let json: string;
  beforeAll(() => {
    template = synth().template;
    json = JSON.stringify(template.toJSON());
  });

  it('encrypts the secret with its own KMS key, rotation enabled, and starts it empty of keys', () => {
    template.hasResourceProperties('AWS::KMS::Key', { EnableKeyRotation: true });
    template.hasResourceProperties('AWS::SecretsManager::Secret', {
      KmsKeyId: { 'Fn::GetAtt': [Match.stringLikeRegexp('^TicketKeysKey'), 'Arn'] },
      SecretString: EMPTY_KEY_SET_PLACEHOLDER,
    });
    expect(json).not.toMatch(/"material"/);
    expect(json).not.toMatch(/GenerateSecretString/);
  });

  it('rotates with its function on Secrets Manager\'s schedule; at deploy Secrets Manager only tests the configuration', () => {
    template.hasResourceProperties('AWS::SecretsManager::RotationSchedule', {
      RotationLambdaARN: { 'Fn::GetAtt': [Match.stringLikeRegexp('RotationFunction'), 'Arn'] },
      // Secrets Manager rotates any time in the window; 1 hour bounds how close two rotations may come.
      RotationRules: { ScheduleExpression: 'rate(12 hours)', Duration: '1h' },
      RotateImmediatelyOnUpdate: false,
    });
    expect(JSON.stringify(template.findResources('AWS::Scheduler::Schedule'))).not.toContain('rotateSecret');
    // A rate in days would otherwise rotate at any hour of its UTC day.
    synth({ rotationInterval: Duration.days(2), ticketLifetime: Duration.days(2) }).template.hasResourceProperties('AWS::SecretsManager::RotationSchedule', {
      RotationRules: { ScheduleExpression: 'rate(2 days)', Duration: '1h' },
    });
  });

  it('starts the rotations with the Scheduler when Secrets Manager\'s periods would not fall evenly (hours that do not divide a day), and sizes retention for each schedule\'s lateness', () => {
    const uneven = synth({ rotationInterval: Duration.hours(10) }).template;
    expect((resource(uneven, 'AWS::Scheduler::Schedule', 'FrequentRotation') as { ScheduleExpression: string }).ScheduleExpression).toBe('rate(10 hours)');
    const environment = (stack: Template) => (resource(stack, 'AWS::Lambda::Function', 'RotationFunction') as { Environment: { Variables: Record<string, string> } }).Environment.Variables;
    expect(environment(template)).toMatchObject({ ROTATION_INTERVAL_SECONDS: '43200', TICKET_LIFETIME_SECONDS: '43200' });
    // HAProxy holds one previous key: at 12 hours, with up to 1h15m of lateness, 10 hours (whole hours) of lifetime.
    expect(environment(synth({ flavor: 'haproxy' }).template)).toMatchObject({ ROTATION_INTERVAL_SECONDS: '43200', TICKET_LIFETIME_SECONDS: '36000' });
  });

  it('schedules RotateSecret with EventBridge Scheduler when the interval is under 4 hours, with a token of its own for each start', () => {
    const frequent = synth({ rotationInterval: Duration.minutes(90), ticketLifetime: Duration.hours(3) }).template;
    const schedule = resource(frequent, 'AWS::Scheduler::Schedule', 'FrequentRotation') as { ScheduleExpression: string; Target: { Arn: unknown; Input: unknown; RetryPolicy: unknown } };
    expect(schedule.ScheduleExpression).toBe('rate(90 minutes)');
    expect(JSON.stringify(schedule.Target.Arn)).toContain(':aws-sdk:secretsmanager:rotateSecret');
    const input = JSON.parse(new ResolvedTemplate(frequent.toJSON() as never).resolve(schedule.Target.Input) as string) as Record<string, string>;
    expect(Object.keys(input).sort()).toEqual(['ClientRequestToken', 'SecretId']);
    // The Scheduler puts the start's time in place of its context attribute:
    // https://docs.aws.amazon.com/scheduler/latest/UserGuide/managing-schedule-context-attributes.html
    const token = input.ClientRequestToken!.replace('<aws.scheduler.scheduled-time>', '2026-11-25T18:00:00Z');
    expect(token).toBe('scheduled-rotation-2026-11-25T18:00:00Z');
    // RotateSecret's ClientRequestToken: 32 to 64 characters; it becomes the version id the nodes are sent.
    expect(token.length).toBeGreaterThanOrEqual(32);
    expect(token.length).toBeLessThanOrEqual(64);
    expect(new RegExp(VERSION_ID_PATTERN).test(token)).toBe(true);
    // A start that cannot get through in 5 minutes is left to the next one: retention covers that lateness.
    expect(schedule.Target.RetryPolicy).toEqual({ MaximumRetryAttempts: 3, MaximumEventAgeInSeconds: 300 });
  });

  it('moving between Secrets Manager\'s schedule and the Scheduler, either way, leaves exactly one schedule that starts rotations', () => {
    const native = synth().template;
    const frequent = synth({ rotationInterval: Duration.minutes(90), ticketLifetime: Duration.hours(3) }).template;
    expect(rotationStartsAfter([native])).toEqual(['Secrets Manager rate(12 hours)']);
    expect(rotationStartsAfter([frequent])).toEqual(['Scheduler rate(90 minutes)']);
    expect(rotationStartsAfter([native, frequent])).toEqual(['Scheduler rate(90 minutes)']);
    expect(rotationStartsAfter([frequent, native])).toEqual(['Secrets Manager rate(12 hours)']);
    expect(rotationStartsAfter([native, frequent, native, frequent])).toEqual(['Scheduler rate(90 minutes)']);
  });

  it('deploys each function with exactly the environment the contract names, and each reads it back', () => {
    const variables = (name: string, stack = template) => Object.keys((resource(stack, 'AWS::Lambda::Function', name) as { Environment: { Variables: Record<string, string> } }).Environment.Variables).sort();
    expect(variables('RotationFunction')).toEqual([...Object.values(ROTATION_ENVIRONMENT), 'POWERTOOLS_SERVICE_NAME'].sort());
    const everyVerifierSetting = synth({ verifierSni: 'www.example.com', verifierStaticNodes: ['10.0.0.1:443'], verifierPeersPerNode: 4 }).template;
    const optional: string[] = [VERIFIER_ENVIRONMENT.capturedNodes];
    expect(variables('VerifierFunction', everyVerifierSetting)).toEqual([...Object.values(VERIFIER_ENVIRONMENT).filter((name) => !optional.includes(name)), 'POWERTOOLS_SERVICE_NAME'].sort());
  });

  it('names its outputs as the README\'s deploy steps do', () => {
    const names = (stack: Template) => Object.keys((stack.toJSON() as { Outputs: Record<string, unknown> }).Outputs).sort();
    const expected = ['AlarmTopicArn', 'CommandOutputLogGroup', 'ConvergenceAssociationId', 'DocumentName', 'KeyNamesParameter', 'NodePolicyArn', 'OnboardingDocumentName', 'RotationLogGroup', 'SecretArn', 'TargetTag', 'VerifierFunctionName'];
    expect(names(template)).toEqual(expected);
    const inVpc = synth({ verifierVpcId: 'vpc-0abc', verifierSubnetIds: ['subnet-1'] }).template;
    expect(names(inVpc)).toEqual([...expected, 'VerifierSecurityGroupId'].sort());
    const readme = readFileSync(join(import.meta.dirname, '..', '..', 'README.md'), 'utf8');
    const documented = [...readme.matchAll(/^\| `(\w+)` \|/gm)].map((match) => match[1]!).filter((name) => /^[A-Z]/.test(name));
    expect(documented.sort()).toEqual(names(inVpc));
    for (const mention of readme.matchAll(/stack output `(\w+)`|<([A-Z]\w+)>/g)) expect(names(inVpc)).toContain(mention[1] ?? mention[2]);
  });

  it('runs the rotation function on Node 24, arm64, with the whole Lambda limit, and no secrets in its environment', () => {
    const fn = resource(template, 'AWS::Lambda::Function', 'RotationFunction');
    expect(fn).toMatchObject({ Runtime: 'nodejs24.x', Architectures: ['arm64'], Timeout: 900, Handler: 'index.handler' });
    const environment = (fn.Environment as { Variables: Record<string, unknown> }).Variables;
    expect(Object.keys(environment).sort()).toEqual(
      ['COMMAND_OUTPUT_LOG_GROUP', 'DOCUMENT_NAME', 'KEY_LENGTH', 'MAX_CONCURRENCY', 'MAX_ERRORS', 'POWERTOOLS_SERVICE_NAME', 'ROTATION_INTERVAL_SECONDS', 'SERVER_FLAVOR', 'TARGET_TAG_KEY', 'TARGET_TAG_VALUE', 'TICKET_LIFETIME_SECONDS', 'VERIFIER_FUNCTION_NAME', 'KEY_NAMES_PARAMETER'].sort(),
    );
    expect(environment).toMatchObject({ KEY_LENGTH: '80', ROTATION_INTERVAL_SECONDS: '43200', TARGET_TAG_KEY: 'TicketKeyFleet', TARGET_TAG_VALUE: 'edge', MAX_CONCURRENCY: '50', MAX_ERRORS: '0' });
  });

  it('builds the SSM document from the applier script, with constrained parameters', () => {
    const content = resource(template, 'AWS::SSM::Document', 'NodeApplier').Content as {
      parameters: Record<string, { allowedPattern?: string; allowedValues?: string[] }>;
      mainSteps: { inputs: { runCommand: string[] } }[];
    };
    expect(content.parameters.SecretId?.allowedPattern).toBe(SECRET_ARN_PATTERN);
    expect(content.parameters.Action?.allowedValues).toEqual(['apply', 'status']);
    const command = content.mainSteps[0]!.inputs.runCommand.join('\n');
    expect(embeddedFiles(command)).toEqual(sources(applierFiles()));
    expect(command).toMatch(/aws secretsmanager get-secret-value .*--query SecretString/);
    expect(command).toContain("'--reload-cmd' 'systemctl reload nginx'");
  });

  it('keeps late and new nodes converged with an association on the same tag', () => {
    template.hasResourceProperties('AWS::SSM::Association', {
      Targets: [{ Key: 'tag:TicketKeyFleet', Values: ['edge'] }],
      Parameters: { SecretId: [{ Ref: Match.anyValue() }] },
      ScheduleExpression: 'rate(30 minutes)',
      ApplyOnlyAtCronInterval: false,
    });
  });

  it('sends command output and the function\'s logs to log groups with retention, and saves audit queries', () => {
    const groups = Object.values(template.findResources('AWS::Logs::LogGroup'));
    expect(groups).toHaveLength(3);
    for (const group of groups) expect((group as { Properties: { RetentionInDays: number } }).Properties.RetentionInDays).toBe(365);
    const queries = Object.values(template.findResources('AWS::Logs::QueryDefinition')).map((query) => (query as { Properties: { Name: string; QueryString: string } }).Properties);
    expect(queries.map((query) => query.Name)).toEqual([
      'TicketKeyRotation/TicketKeys/rotation-history',
      'TicketKeyRotation/TicketKeys/failed-nodes',
      'TicketKeyRotation/TicketKeys/revocations',
    ]);
    expect(queries[0]!.QueryString).toMatch(/kind.*generation.*keyNames.*nodesUpdated/);
    expect(queries[1]!.QueryString).toMatch(/failedNodes/);
    expect(queries[2]!.QueryString).toMatch(/requestedBy.*generation[\s\S]*message = "revocation"/);
  });

  it('offers the nodes a managed policy in an output (what it allows is proven in iam.test.ts)', () => {
    resource(template, 'AWS::IAM::ManagedPolicy', 'NodePolicy');
    template.hasOutput('*', { Value: { Ref: Match.stringLikeRegexp('NodePolicy') } });
  });

  it('runs the verifier outside any VPC against public addresses by default, in the nodes\' VPC when given', () => {
    const verifier = resource(template, 'AWS::Lambda::Function', 'VerifierFunction');
    expect(verifier).toMatchObject({ Runtime: 'nodejs24.x', Architectures: ['arm64'] });
    expect(verifier.VpcConfig).toBeUndefined();
    expect((verifier.Environment as { Variables: Record<string, string> }).Variables).toMatchObject({ VERIFY_ADDRESSES: 'public', VERIFY_PORT: '443' });
    const inVpc = synth({ verifierVpcId: 'vpc-0abc', verifierSubnetIds: ['subnet-1', 'subnet-2'], verifierPort: 8443, verifierSni: 'www.example.com' }).template;
    const placed = resource(inVpc, 'AWS::Lambda::Function', 'VerifierFunction');
    expect(placed.VpcConfig).toEqual({ SubnetIds: ['subnet-1', 'subnet-2'], SecurityGroupIds: [{ 'Fn::GetAtt': [expect.stringMatching(/^TicketKeysVerifierSecurityGroup/), 'GroupId'] }] });
    expect((placed.Environment as { Variables: Record<string, string> }).Variables).toMatchObject({ VERIFY_ADDRESSES: 'private', VERIFY_PORT: '8443', VERIFY_SNI: 'www.example.com' });
    const group = resource(inVpc, 'AWS::EC2::SecurityGroup', 'VerifierSecurityGroup');
    expect(group.VpcId).toBe('vpc-0abc');
    expect((group.SecurityGroupEgress as { FromPort: number }[]).map((rule) => rule.FromPort).sort()).toEqual([443, 8443]);
    expect(() => synth({ verifierVpcId: 'vpc-0abc' })).toThrow(/verifierSubnetIds is required with verifierVpcId/);
  });

  it('runs the verifier as a canary every 5 minutes, with alarms to an encrypted topic and a dashboard', () => {
    const canary = resource(template, 'AWS::Scheduler::Schedule', 'Canary');
    expect(canary.ScheduleExpression).toBe('rate(5 minutes)');
    expect((canary.Target as { Input: string }).Input).toBe('{"action":"canary"}');
    const alarms = Object.values(template.findResources('AWS::CloudWatch::Alarm')).map((alarm) => (alarm as { Properties: Record<string, unknown> }).Properties);
    expect(alarms.map((alarm) => alarm.MetricName).sort()).toEqual(['CrossNodeResumptionRate', 'Errors', 'NodesNotOnExpectedKey', 'NodesSkipped', 'RotationsFailed']);
    // Tagged nodes a rotation skipped (stopped, disconnected): an alarm above a threshold of the operator's.
    expect(alarms.find((alarm) => alarm.MetricName === 'NodesSkipped')).toMatchObject({ ComparisonOperator: 'GreaterThanThreshold', Threshold: 0, Statistic: 'Maximum', Dimensions: [{ Name: 'service', Value: 'tls-ticket-key-rotation' }] });
    const tolerant = Object.values(synth({ skippedNodesAlarmThreshold: 3 }).template.findResources('AWS::CloudWatch::Alarm')).map((alarm) => (alarm as { Properties: Record<string, unknown> }).Properties);
    expect(tolerant.find((alarm) => alarm.MetricName === 'NodesSkipped')?.Threshold).toBe(3);
    const rate = alarms.find((alarm) => alarm.MetricName === 'CrossNodeResumptionRate')!;
    expect(rate).toMatchObject({ ComparisonOperator: 'LessThanThreshold', Threshold: 100, Namespace: 'TlsTicketKeyRotation', Dimensions: [{ Name: 'service', Value: 'tls-ticket-key-verifier' }] });
    for (const alarm of alarms) expect(alarm.AlarmActions).toEqual([{ Ref: expect.stringMatching(/^TicketKeysAlarmTopic/) }]);
    expect(resource(template, 'AWS::SNS::Topic', 'AlarmTopic').KmsMasterKeyId).toBeDefined();
    template.resourceCountIs('AWS::SNS::Subscription', 0);
    synth({ alarmEmail: 'oncall@example.com' }).template.hasResourceProperties('AWS::SNS::Subscription', { Protocol: 'email', Endpoint: 'oncall@example.com' });
    const dashboard = resource(template, 'AWS::CloudWatch::Dashboard', 'Dashboard');
    const body = JSON.stringify(dashboard.DashboardBody);
    // "All dashboards in your account are global, not region-specific"
    // (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-cloudwatch-dashboard.html):
    // the same stack in two regions needs two names.
    expect(new ResolvedTemplate(template.toJSON() as never).resolve(dashboard.DashboardName)).toBe(`TicketKeyRotation-ticket-keys-${REGION}`);
    for (const name of ['RotationsSucceeded', 'NodesFailed', 'NodesSkipped', 'CrossNodeResumptionRate', 'NodesOnExpectedKey', 'UnreachableNodes', 'VerificationDuration']) expect(body).toContain(name);
  });

  it('builds the onboarding document from onboard-node.sh and the applier, with the stack\'s settings, the boot-time fetch of its secret and a constrained config path', () => {
    const resolved = new ResolvedTemplate(template.toJSON() as never);
    const content = resolved.one('AWS::SSM::Document', 'TicketKeysNodeOnboarding').properties.Content as {
      parameters: Record<string, { default?: string; allowedPattern?: string }>;
      mainSteps: { inputs: { runCommand: string[] } }[];
    };
    expect(content.parameters.ConfigFile).toEqual(expect.objectContaining({ default: '/etc/nginx/nginx.conf', allowedPattern: '^/[A-Za-z0-9._/-]+$' }));
    const command = content.mainSteps[0]!.inputs.runCommand.join('\n');
    expect(embeddedFiles(command)).toEqual(sources(onboardingFiles()));
    expect(onboardingFiles()).toEqual(expect.arrayContaining(['onboard-node.sh', 'ticket_keys/onboard.py', ...applierFiles()]));
    const secretArn = resolved.ref(resolved.one('AWS::SecretsManager::Secret', 'TicketKeysKeySet').id);
    const fetch = `'aws' 'secretsmanager' 'get-secret-value' '--region' '${REGION}' '--secret-id' '${secretArn}' '--version-stage' 'AWSCURRENT' '--query' 'SecretString' '--output' 'text' '--cli-connect-timeout' '5' '--cli-read-timeout' '10'`;
    expect(command).toContain(
      `bash "$work/onboard-node.sh" '--flavor' 'nginx' '--key-dir' '/run/tls-ticket-keys' '--include' '/run/tls-ticket-keys/ticket-keys.conf' '--test-cmd' 'nginx -t -q' '--config-dump-cmd' 'nginx -T' '--fetch-cmd' '${fetch.replace(/'/g, `'\\''`)}' '--fetch-wait' '30' --config "$config"`,
    );
    expect(command).toContain("config='{{ ConfigFile }}'");
    template.hasOutput('*', { Value: { Ref: Match.stringLikeRegexp('NodeOnboarding') } });
    const haproxy = synth({ flavor: 'haproxy' }).template;
    expect((resource(haproxy, 'AWS::SSM::Document', 'NodeOnboarding').Content as { parameters: Record<string, { default?: string }> }).parameters.ConfigFile!.default).toBe('/etc/haproxy/haproxy.cfg');
  });

  it('gives the verifier one vCPU (1,769 MB) and 5 minutes: what 10,000 nodes measured', () => {
    expect(resource(template, 'AWS::Lambda::Function', 'VerifierFunction')).toMatchObject({ MemorySize: 1769, Timeout: 300, Architectures: ['arm64'] });
  });

  it('keeps each SSM document within the 64 KB that CreateDocument accepts', () => {
    // CreateDocument, Content: "The content of the document must not exceed 64KB."
    // (https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_CreateDocument.html)
    const sizes: string[] = [];
    for (const flavor of SERVER_FLAVORS) {
      const resolved = new ResolvedTemplate(synth({ flavor }).template.toJSON() as never);
      for (const name of ['TicketKeysNodeApplier', 'TicketKeysNodeOnboarding']) {
        const size = Buffer.byteLength(JSON.stringify(resolved.one('AWS::SSM::Document', name).properties.Content));
        expect(size, `${flavor} ${name}: ${size} bytes`).toBeLessThanOrEqual(64_000);
        sizes.push(`${flavor} ${name} ${size} bytes`);
      }
    }
    console.log(`SSM document sizes: ${sizes.join('; ')}`);
  });

  it('builds the document for an HAProxy fleet, and fails synth when HAProxy\'s three keys cannot cover the ticket lifetime', () => {
    const haproxy = synth({ flavor: 'haproxy' }).template;
    const command = (resource(haproxy, 'AWS::SSM::Document', 'NodeApplier').Content as { mainSteps: { inputs: { runCommand: string[] } }[] }).mainSteps[0]!.inputs.runCommand.join('\n');
    expect(command).toContain(
      "'--flavor' 'haproxy' '--key-dir' '/run/tls-ticket-keys' '--include' '/run/tls-ticket-keys/tls-ticket-keys' '--test-cmd' 'haproxy -c -q -f /etc/haproxy/haproxy.cfg' '--config-dump-cmd' 'cat /etc/haproxy/haproxy.cfg' '--reload-cmd' 'systemctl reload haproxy'",
    );
    expect(command).not.toContain("'--allow-persistent-key-dir'");
    const nginx = synth({}).template;
    const nginxCommand = (resource(nginx, 'AWS::SSM::Document', 'NodeApplier').Content as { mainSteps: { inputs: { runCommand: string[] } }[] }).mainSteps[0]!.inputs.runCommand.join('\n');
    expect(nginxCommand).toContain("'--key-dir' '/run/tls-ticket-keys' '--include' '/run/tls-ticket-keys/ticket-keys.conf' '--test-cmd' 'nginx -t -q' '--config-dump-cmd' 'nginx -T'");
    const persistent = synth({ keyDirectory: '/var/lib/tls-ticket-keys', allowPersistentKeyDirectory: true }).template;
    expect(JSON.stringify(resource(persistent, 'AWS::SSM::Document', 'NodeApplier').Content)).toContain(
      "'--key-dir' '/var/lib/tls-ticket-keys' '--include' '/var/lib/tls-ticket-keys/ticket-keys.conf'",
    );
    expect(JSON.stringify(resource(persistent, 'AWS::SSM::Document', 'NodeApplier').Content)).toContain("'--allow-persistent-key-dir'");
    const viaApi = synth({ flavor: 'haproxy', runtimeSocket: '/run/haproxy/admin.sock' }).template;
    expect(JSON.stringify(resource(viaApi, 'AWS::SSM::Document', 'NodeApplier').Content)).toContain("'--runtime-socket' '/run/haproxy/admin.sock'");
    expect(() => synth({ runtimeSocket: '/run/haproxy/admin.sock' })).toThrow(/runtimeSocket is for the haproxy flavor only/);
    expect(() => synth({ flavor: 'haproxy', rotationInterval: Duration.hours(6), ticketLifetime: Duration.hours(18) })).toThrow(
      /rotation interval too short for client session lifetime: rotating every 6h \(each rotation taking effect up to 1h15m after its scheduled time\) with a ticket lifetime of 18h needs 4 previous keys plus current and next, but haproxy holds at most 3 keys \(1 previous, current and next\)\. Rotate no more often than every 19h15m, or shorten the ticket lifetime to at most 4h45m\./,
    );
    expect(() => synth({ rotationInterval: Duration.hours(6), ticketLifetime: Duration.hours(18) })).not.toThrow();
  });

  it('builds the documents for an Apache fleet: 48-byte keys, its include and commands, and a synth warning that says what each rotation costs', () => {
    const { stack, template: apache } = synth({ flavor: 'apache' });
    const command = (resource(apache, 'AWS::SSM::Document', 'NodeApplier').Content as { mainSteps: { inputs: { runCommand: string[] } }[] }).mainSteps[0]!.inputs.runCommand.join('\n');
    expect(command).toContain(
      "'--flavor' 'apache' '--key-dir' '/run/tls-ticket-keys' '--include' '/run/tls-ticket-keys/ticket-keys.conf' '--test-cmd' 'apache2ctl configtest' '--config-dump-cmd' 'apache2ctl -t -D DUMP_INCLUDES' '--reload-cmd' 'systemctl reload apache2'",
    );
    expect((resource(apache, 'AWS::SSM::Document', 'NodeOnboarding').Content as { parameters: Record<string, { default?: string }> }).parameters.ConfigFile!.default).toBe('/etc/apache2/apache2.conf');
    const variables = (resource(apache, 'AWS::Lambda::Function', 'RotationFunction') as { Environment: { Variables: Record<string, string> } }).Environment.Variables;
    expect(variables).toMatchObject({ SERVER_FLAVOR: 'apache', KEY_LENGTH: '48', ROTATION_INTERVAL_SECONDS: '43200', TICKET_LIFETIME_SECONDS: '43200' });
    const warnings = Annotations.fromStack(stack).findWarning('*', Match.stringLikeRegexp('apache holds one ticket key'));
    expect(warnings.map((warning) => warning.entry.data)).toEqual([expect.stringMatching(/^apache holds one ticket key, with no previous or next key beside it: every rotation costs each client a full handshake.*Rotating every 12h, clients pay it once every 12h/)]);
    expect(Annotations.fromStack(synth({}).stack).findWarning('*', Match.stringLikeRegexp('holds one ticket key'))).toEqual([]);
    expect(() => synth({ flavor: 'apache', keyLength: 80 })).toThrow(/apache reads 48-byte ticket keys, not 80-byte ones: set the key length to 48/);
    expect(() => synth({ flavor: 'apache', rotationInterval: Duration.minutes(30) })).toThrow(/rotation interval 30m is too short for apache/);
  });

  it('fails synth for an impossible interval and lifetime, saying what to change', () => {
    expect(() => synth({ rotationInterval: Duration.hours(1), ticketLifetime: Duration.days(8) })).toThrow(/longer than TLS allows/);
    expect(() => synth({ rotationInterval: Duration.minutes(30), ticketLifetime: Duration.days(7) })).toThrow(
      /rotation interval too short for client session lifetime.*Rotate no more often than every/,
    );
    expect(() => synth({ rotationInterval: Duration.minutes(15) })).toThrow(
      /rotation interval 15m is not longer than how late a scheduled rotation may take effect \(21m: its window and the time to apply it\): rotate less often than every 21m/,
    );
  });

  it('reads every setting from context and names the one that is wrong', () => {
    const props = propsFromContext((key) => ({ targetTagKey: 'k', targetTagValue: 'v', rotationInterval: '6h', ticketLifetime: '18h', keyLength: '48', maxErrors: '10%' })[key as string]);
    expect(props).toMatchObject({ targetTagKey: 'k', keyLength: 48, maxErrors: '10%' });
    expect(props.rotationInterval?.toHours()).toBe(6);
    expect(() => propsFromContext(() => undefined)).toThrow(/context setting targetTagKey is required: set it in cdk.json or pass -c targetTagKey=VALUE/);
    expect(() => propsFromContext((key) => ({ targetTagKey: 'k', targetTagValue: 'v', keyLength: '64' })[key as string])).toThrow(/keyLength="64" is not supported/);
    expect(() => propsFromContext((key) => ({ targetTagKey: 'k', targetTagValue: 'v', maxErrors: 'lots' })[key as string])).toThrow(/maxErrors="lots" must be a count/);
    expect(propsFromContext((key) => ({ targetTagKey: 'k', targetTagValue: 'v', allowPersistentKeyDirectory: 'true' })[key as string]).allowPersistentKeyDirectory).toBe(true);
    expect(() => propsFromContext((key) => ({ targetTagKey: 'k', targetTagValue: 'v', allowPersistentKeyDirectory: 'yes' })[key as string])).toThrow(
      /allowPersistentKeyDirectory="yes" must be true or false/,
    );
  });

  it('passes cdk-nag\'s AwsSolutions checks with every suppression justified: defaults, the Scheduler, the verifier in a VPC', () => {
    const variants: Partial<TicketKeyRotationProps>[] = [
      {},
      { rotationInterval: Duration.minutes(90), ticketLifetime: Duration.hours(3) },
      { verifierVpcId: 'vpc-0123456789abcdef0', verifierSubnetIds: ['subnet-0123456789abcdef0'] },
    ];
    for (const variant of variants) {
      const { stack } = synth(variant, true);
      const findings = [...Annotations.fromStack(stack).findError('*', Match.stringLikeRegexp('AwsSolutions-.*')), ...Annotations.fromStack(stack).findWarning('*', Match.stringLikeRegexp('AwsSolutions-.*'))];
      expect(findings.map((finding) => `${finding.id}: ${String(finding.entry.data).split('\n')[0]}`), JSON.stringify(variant)).toEqual([]);
    }
  });

  it('synthesizes with `cdk synth`\'s app command and cdk.json\'s context, with no AWS credentials and no Docker', () => {
    const out = mkdtempSync(join(tmpdir(), 'cdk-out-'));
    try {
      // A docker that always fails: bundling must not need it.
      writeFileSync(join(out, 'docker'), '#!/bin/sh\necho "docker must not be used" >&2\nexit 1\n', { mode: 0o755 });
      const environment = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('AWS_')));
      const cdkJson = JSON.parse(readFileSync(join(import.meta.dirname, '..', '..', 'cdk.json'), 'utf8')) as { context: Record<string, unknown> };
      execFileSync(process.execPath, [join(import.meta.dirname, '..', '..', 'dist', 'bin', 'app.js')], {
        env: { ...environment, CDK_OUTDIR: out, CDK_CONTEXT_JSON: JSON.stringify(cdkJson.context), PATH: `${out}:${process.env.PATH}` },
        stdio: 'pipe',
      });
      const synthesized = readFileSync(join(out, 'TicketKeyRotation.template.json'), 'utf8');
      // The cloud assembly names this stack and nothing else: what cdk deploy would deploy.
      const manifest = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as { artifacts: Record<string, { type: string }> };
      expect(Object.entries(manifest.artifacts).filter(([, artifact]) => artifact.type === 'aws:cloudformation:stack').map(([name]) => name)).toEqual(['TicketKeyRotation']);
      expect(synthesized).toContain('AWS::SSM::Document');
      expect(synthesized).toContain('"TicketKeyFleet"');
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });

  it('refuses a setting that cannot work with its message alone, no stack trace, and exit 1', () => {
    const cdkJson = JSON.parse(readFileSync(join(import.meta.dirname, '..', '..', 'cdk.json'), 'utf8')) as { context: Record<string, unknown> };
    const environment = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('AWS_')));
    for (const [setting, message] of [
      [{ ticketLifetime: '8d' }, /^cdk synth: ticket lifetime 8d is longer than TLS allows \(RFC 8446: at most 7d\): shorten the ticket lifetime\n$/],
      [{ rotationInterval: '30m', ticketLifetime: '7d' }, /^cdk synth: rotation interval too short for client session lifetime: .* Rotate no more often than every [^\n]*\n$/],
      [{ maxConcurrency: 'lots' }, /^cdk synth: context setting maxConcurrency="lots" must be a count like 10 or a percentage like 25%\n$/],
    ] as const) {
      const out = mkdtempSync(join(tmpdir(), 'cdk-out-'));
      try {
        const run = spawnSync(process.execPath, [join(import.meta.dirname, '..', '..', 'dist', 'bin', 'app.js')], {
          env: { ...environment, CDK_OUTDIR: out, CDK_CONTEXT_JSON: JSON.stringify({ ...cdkJson.context, ...setting }) },
          encoding: 'utf8',
        });
        expect(run.status, JSON.stringify(setting)).toBe(1);
        expect(run.stderr, JSON.stringify(setting)).toMatch(message);
      } finally {
        rmSync(out, { recursive: true, force: true });
      }
    }
  });
});
