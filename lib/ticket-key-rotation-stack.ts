import { Stack, type StackProps } from 'aws-cdk-lib';
import type { Construct } from 'constructs';
import { TicketKeyRotation, type TicketKeyRotationProps } from './ticket-key-rotation.js';

export interface TicketKeyRotationStackProps extends StackProps {
  readonly rotation: TicketKeyRotationProps;
}

/** The deployable stack: one fleet's ticket key rotation. */
export class TicketKeyRotationStack extends Stack {
  readonly rotation: TicketKeyRotation;

  constructor(scope: Construct, id: string, props: TicketKeyRotationStackProps) {
    super(scope, id, {
      description: 'Rotates TLS session ticket keys across a load-balanced fleet without losing cross-node resumption',
      ...props,
    });
    this.rotation = new TicketKeyRotation(this, 'TicketKeys', props.rotation);
  }
}
