import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository's root, found from this module whether it runs from src/ or from dist/. */
export const PROJECT_ROOT = ((): string => {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'applier', 'apply-ticket-keys.sh'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`applier/apply-ticket-keys.sh not found above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
  return dir;
})();
