#!/usr/bin/env node
import { App } from 'aws-cdk-lib';
import { propsFromContext } from '../lib/settings.js';
import { TicketKeyRotationStack } from '../lib/ticket-key-rotation-stack.js';

const app = new App();
new TicketKeyRotationStack(app, app.node.tryGetContext('stackName') ?? 'TicketKeyRotation', {
  rotation: propsFromContext((key) => app.node.tryGetContext(key)),
});
app.synth();
