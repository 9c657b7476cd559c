import type { VerifyNode } from './verifier.js';

const NODE_ADDRESS = /^(?:([A-Za-z0-9._-]+)=)?(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})(?:\/([A-Za-z0-9.-]+))?$/;

export class NodeAddressError extends Error {
  override name = 'NodeAddressError';
}

/**
 * "host:port" or "host:port/sni", as operators write a node on a command line, in a file or in a
 * setting, named after its address; "name=host:port[/sni]" names it, with its instance id for
 * example, so that the rotation and the verifier speak of one node.
 */
export function parseNodeAddress(text: string): VerifyNode {
  const match = NODE_ADDRESS.exec(text.trim());
  const port = Number(match?.[3]);
  if (match === null || port < 1 || port > 65535) {
    throw new NodeAddressError(`node "${text}" is not [NAME=]HOST:PORT[/SNI] (for example 10.0.1.5:443/www.example.com, or i-0123456789abcdef0=10.0.1.5:443)`);
  }
  const host = (match[2] as string).replace(/^\[|\]$/g, '');
  return { name: match[1] ?? `${match[2]}:${port}`, host, port, ...(match[4] ? { servername: match[4] } : {}) };
}

/** Parses a list of node addresses, refusing a name or an address given twice. */
export function parseNodeList(lines: string[]): VerifyNode[] {
  const nodes = lines.map(parseNodeAddress);
  const address = (node: VerifyNode) => `${node.host}:${node.port}`;
  const duplicate = nodes.find((node, index) => nodes.findIndex((other) => other.name === node.name || address(other) === address(node)) !== index);
  if (duplicate) throw new NodeAddressError(`node ${duplicate.name} is listed twice`);
  return nodes;
}
