// The configurations whose logical IDs test/cdk/logical-ids.test.ts pins, and how it reads them.
import { App, Duration } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { TicketKeyRotationStack } from '../../lib/ticket-key-rotation-stack.js';
import type { TicketKeyRotationProps } from '../../lib/ticket-key-rotation.js';

const FLEET = { targetTagKey: 'TicketKeyFleet', targetTagValue: 'edge' };

/** Configurations that between them make every kind of resource the construct can make. */
export const CONFIGURATIONS: Record<string, Partial<TicketKeyRotationProps>> = {
  default: {},
  'haproxy, runtime API, alarm email': { flavor: 'haproxy', runtimeSocket: '/run/haproxy/admin.sock', alarmEmail: 'ops@example.com' },
  'apache, every 90 minutes (the Scheduler)': { flavor: 'apache', rotationInterval: Duration.minutes(90), ticketLifetime: Duration.minutes(90) },
  'verifier in a VPC': { verifierVpcId: 'vpc-0123456789abcdef0', verifierSubnetIds: ['subnet-0aaa', 'subnet-0bbb'], nodeRoleArns: ['arn:aws:iam::123456789012:role/edge-node'] },
};

/** Each resource's and output's logical ID with its type, in a stack synthesized with `props`. */
export function logicalIds(props: Partial<TicketKeyRotationProps>): Record<string, string> {
  const stack = new TicketKeyRotationStack(new App(), 'TicketKeyRotation', { rotation: { ...FLEET, ...props } });
  const template = Template.fromStack(stack).toJSON() as { Resources: Record<string, { Type: string }>; Outputs?: Record<string, unknown> };
  return Object.fromEntries(
    [...Object.entries(template.Resources).map(([id, resource]) => [id, resource.Type]), ...Object.keys(template.Outputs ?? {}).map((id) => [id, 'Output'])].sort(([a], [b]) =>
      (a as string).localeCompare(b as string),
    ),
  );
}

