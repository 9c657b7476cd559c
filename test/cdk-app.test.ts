import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { TicketKeyRotationStack } from '../lib/ticket-key-rotation-stack.js';

describe('CDK app skeleton', () => {
  it('synthesizes without AWS credentials or an account', () => {
    const app = new App();
    const stack = new TicketKeyRotationStack(app, 'TicketKeyRotation');
    const template = Template.fromStack(stack).toJSON() as { Description?: string };
    expect(template.Description).toMatch(/TLS session ticket keys/);
    expect(app.synth().getStackByName('TicketKeyRotation').templateFile).toBe('TicketKeyRotation.template.json');
  });
});
