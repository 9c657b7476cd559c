import type { Flavor } from './flavor.js';
import { APACHE } from './apache.js';
import { HAPROXY } from './haproxy.js';
import { NGINX } from './nginx.js';

export type { Flavor, LocalNodePlace, ResponseHead } from './flavor.js';

/** Every flavor, by name: the one list a new flavor joins. */
export const FLAVORS = { nginx: NGINX, haproxy: HAPROXY, apache: APACHE } as const satisfies Record<string, Flavor>;
export type ServerFlavor = keyof typeof FLAVORS;
export const SERVER_FLAVORS = Object.keys(FLAVORS) as ServerFlavor[];
export const DEFAULT_FLAVOR: ServerFlavor = 'nginx';

export function isServerFlavor(value: unknown): value is ServerFlavor {
  return typeof value === 'string' && Object.hasOwn(FLAVORS, value);
}

/** The flavors to name in a message that refuses another: "nginx or haproxy". */
export function supportedFlavors(): string {
  return `${SERVER_FLAVORS.slice(0, -1).join(', ')} or ${SERVER_FLAVORS.at(-1)}`;
}
