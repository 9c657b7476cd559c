/**
 * What the verifier checks the wire against, published by the rotation: the names of the keys
 * nodes encrypt with, never their material. Names are no secret (every ticket carries its key's
 * name in the clear), so whoever checks the fleet needs no read of the key set.
 */
export interface VersionKeyNames {
  versionId: string;
  generation: number;
  /** The key nodes encrypt new tickets with once they serve this version. */
  currentKey: string;
}

export interface PublishedKeyNames {
  current?: VersionKeyNames;
  /** The version a rotation is rolling out (generation current + 1): nodes move to it one by one. */
  pending?: VersionKeyNames;
}

/** Where the rotation publishes the names: it only ever writes the whole document. */
export interface KeyNamesBoard {
  write(names: PublishedKeyNames): Promise<void>;
}

/** Reads a board's document; anything but a well-formed one is an empty board. */
export function parseKeyNames(text: string): PublishedKeyNames {
  const names: PublishedKeyNames = {};
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch {
    return names;
  }
  for (const slot of ['current', 'pending'] as const) {
    // A JSON value that is not an object (null, a number, a string, an array) has no such slot.
    const entry = (document as Record<string, unknown> | null | undefined)?.[slot] as Partial<VersionKeyNames> | undefined;
    if (typeof entry?.versionId === 'string' && Number.isInteger(entry.generation) && typeof entry.currentKey === 'string' && /^[0-9a-f]{32}$/.test(entry.currentKey)) {
      names[slot] = { versionId: entry.versionId, generation: entry.generation as number, currentKey: entry.currentKey };
    }
  }
  return names;
}
