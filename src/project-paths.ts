import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { PROJECT_ROOT } from './project-root.js';

/** The node scripts: what SSM carries to each node, and what the local mode runs. */
export const APPLIER_DIR = join(PROJECT_ROOT, 'applier');
export const APPLIER_PATH = join(APPLIER_DIR, 'apply-ticket-keys.sh');
export const ONBOARDING_PATH = join(APPLIER_DIR, 'onboard-node.sh');

/** Modules of the program that only onboarding runs. */
const ONBOARDING_MODULES = ['ticket_keys/onboard.py', 'ticket_keys/onboarding.py'];

/** Every file of the node program (applier/ticket_keys/), relative to applier/: its modules, not the bytecode a run leaves there. */
function programFiles(): string[] {
  return readdirSync(join(APPLIER_DIR, 'ticket_keys'), { recursive: true, encoding: 'utf8' })
    .filter((path) => path.endsWith('.py') && !path.includes('__pycache__'))
    .map((path) => join('ticket_keys', path))
    .sort();
}

/** What a node needs to run the applier, relative to applier/: its wrapper and the program, less onboarding's own modules. */
export function applierFiles(): string[] {
  return ['apply-ticket-keys.sh', ...programFiles().filter((file) => !ONBOARDING_MODULES.includes(file))];
}

/** What a node needs to be onboarded (and to run the applier, which onboarding installs), relative to applier/. */
export function onboardingFiles(): string[] {
  return ['onboard-node.sh', 'apply-ticket-keys.sh', ...programFiles()];
}
