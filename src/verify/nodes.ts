import type { VerifyNode } from './verifier.js';

const NODE_ADDRESS = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})(?:\/([A-Za-z0-9.-]+))?$/;

export class NodeAddressError extends Error {
  override name = 'NodeAddressError';
}

/** "host:port" or "host:port/sni", as operators write a node on a command line, in a file or in a setting. */
export function parseNodeAddress(text: string): VerifyNode {
  const match = NODE_ADDRESS.exec(text.trim());
  const port = Number(match?.[2]);
  if (match === null || port < 1 || port > 65535) {
    throw new NodeAddressError(`node "${text}" is not HOST:PORT or HOST:PORT/SNI (for example 10.0.1.5:443/www.example.com)`);
  }
  const host = (match[1] as string).replace(/^\[|\]$/g, '');
  return { name: `${match[1]}:${port}`, host, port, ...(match[3] ? { servername: match[3] } : {}) };
}

/** Parses a list of node addresses, refusing duplicates. */
export function parseNodeList(lines: string[]): VerifyNode[] {
  const nodes = lines.map(parseNodeAddress);
  const duplicate = nodes.find((node, index) => nodes.findIndex((other) => other.name === node.name) !== index);
  if (duplicate) throw new NodeAddressError(`node ${duplicate.name} is listed twice`);
  return nodes;
}
