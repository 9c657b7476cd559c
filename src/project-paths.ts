import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { PROJECT_ROOT } from './project-root.js';

/** The node scripts: what SSM carries to each node, and what the local mode runs. */
export const APPLIER_DIR = join(PROJECT_ROOT, 'applier');
export const APPLIER_PATH = join(APPLIER_DIR, 'apply-ticket-keys.sh');
export const ONBOARDING_PATH = join(APPLIER_DIR, 'onboard-node.sh');

/**
 * What a node needs to run the applier, relative to applier/: its wrapper and the Python
 * program beside it (ticket_keys/, its modules only, not the bytecode a run leaves there).
 */
export function applierFiles(): string[] {
  const program = readdirSync(join(APPLIER_DIR, 'ticket_keys'), { recursive: true, encoding: 'utf8' })
    .filter((path) => path.endsWith('.py') && !path.includes('__pycache__'))
    .map((path) => join('ticket_keys', path))
    .sort();
  return ['apply-ticket-keys.sh', ...program];
}
