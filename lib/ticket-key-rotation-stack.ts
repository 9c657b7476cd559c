import { Stack, type StackProps } from 'aws-cdk-lib';
import type { Construct } from 'constructs';

/**
 * The deployable stack. It holds no resources yet: the secret, the rotation and verifier
 * functions and the SSM document come with the AWS issue, on top of the core in src/.
 */
export class TicketKeyRotationStack extends Stack {
  constructor(scope: Construct, id: string, props: StackProps = {}) {
    super(scope, id, {
      description: 'Rotates TLS session ticket keys across a load-balanced fleet without losing cross-node resumption',
      ...props,
    });
  }
}
