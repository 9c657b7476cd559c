import type { KeyNamesBoard, PublishedKeyNames } from '../core/key-names.js';
import { writePrivateFile } from './private-file.js';

/** The local mode's key names board: a JSON file beside the store, replaced whole at each write. */
export class FileKeyNames implements KeyNamesBoard {
  constructor(readonly path: string) {}

  async write(names: PublishedKeyNames): Promise<void> {
    writePrivateFile(this.path, JSON.stringify(names));
  }
}
