#!/usr/bin/env node
import { App } from 'aws-cdk-lib';
import { TicketKeyRotationStack } from '../lib/ticket-key-rotation-stack.js';

const app = new App();
new TicketKeyRotationStack(app, 'TicketKeyRotation');
app.synth();
