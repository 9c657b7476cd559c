// A deployed stack updates in place only while each resource keeps its logical ID: a new ID
// makes CloudFormation replace the resource (a new key set secret, KMS key, log group or alarm
// topic). The IDs of every configuration below are pinned in test/support/fixtures/logical-ids.json;
// a change to them must be made on purpose, with a way for deployed stacks to follow.
import { readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { EmailSubscription } from 'aws-cdk-lib/aws-sns-subscriptions';
import { describe, expect, it } from 'vitest';
import { TicketKeyRotationStack } from '../../lib/ticket-key-rotation-stack.js';
import { PROJECT_ROOT } from '../../src/project-root.js';
import { CONFIGURATIONS, logicalIds } from '../support/logical-ids.js';

describe('logical IDs', () => {
  const pinned = JSON.parse(readFileSync(join(PROJECT_ROOT, 'test', 'support', 'fixtures', 'logical-ids.json'), 'utf8')) as Record<string, Record<string, string>>;

  it('pins every configuration', () => {
    expect(Object.keys(pinned).sort()).toEqual(Object.keys(CONFIGURATIONS).sort());
  });

  for (const [name, props] of Object.entries(CONFIGURATIONS)) {
    it(`stay as pinned: ${name}`, () => {
      expect(logicalIds(props)).toEqual(pinned[name]);
    });
  }

  it('hold for what a user adds after the construct is made: a subscription added to the alarm topic gets the ID alarmEmail gives it', () => {
    const stack = new TicketKeyRotationStack(new App(), 'TicketKeyRotation', { rotation: { targetTagKey: 'TicketKeyFleet', targetTagValue: 'edge' } });
    stack.rotation.alarmTopic.addSubscription(new EmailSubscription('ops@example.com'));
    const subscriptions = Object.keys(Template.fromStack(stack).findResources('AWS::SNS::Subscription'));
    const pinnedSubscriptions = Object.entries(pinned['haproxy, runtime API, alarm email'] ?? {}).filter(([, type]) => type === 'AWS::SNS::Subscription');
    expect(subscriptions).toEqual(pinnedSubscriptions.map(([id]) => id));
  });

  it('hold for a value the user exports from another stack before synthesis (exportValue reads and locks the ID)', () => {
    const stack = new TicketKeyRotationStack(new App(), 'TicketKeyRotation', { rotation: { targetTagKey: 'TicketKeyFleet', targetTagValue: 'edge' } });
    stack.exportValue(stack.rotation.secret.secretArn);
    const template = Template.fromStack(stack).toJSON() as { Resources: Record<string, unknown> };
    expect(Object.keys(template.Resources).sort()).toEqual(Object.entries(pinned.default ?? {}).filter(([, type]) => type !== 'Output').map(([id]) => id).sort());
  });

  it('are read from a synthesis that leaves no cloud assembly behind in the temporary directory (test/support/cdk-outdir.ts)', () => {
    const assemblies = (): string[] => readdirSync(tmpdir()).filter((name) => name.startsWith('cdk.out'));
    const before = assemblies();
    logicalIds({});
    expect(assemblies()).toEqual(before);
  });
});
