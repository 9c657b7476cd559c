#!/usr/bin/env node
import { App } from 'aws-cdk-lib';
import { propsFromContext } from '../lib/settings.js';
import { SettingError } from '../lib/setting-error.js';
import { TicketKeyRotationStack } from '../lib/ticket-key-rotation-stack.js';
import { PolicyError } from '../src/core/policy.js';

const app = new App();
try {
  new TicketKeyRotationStack(app, app.node.tryGetContext('stackName') ?? 'TicketKeyRotation', {
    rotation: propsFromContext((key) => app.node.tryGetContext(key)),
  });
} catch (error) {
  // A setting that cannot work: what to change, alone; anything else is a fault, with its trace.
  if (!(error instanceof PolicyError || error instanceof SettingError)) throw error;
  process.stderr.write(`cdk synth: ${error.message}\n`);
  process.exit(1);
}
app.synth();
