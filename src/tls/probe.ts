import tls from 'node:tls';
import { KEY_NAME_BYTES } from '../core/keyset.js';
import { FLAVORS } from '../flavors/index.js';

export type TlsVersion = 'TLSv1.2' | 'TLSv1.3';
export const TLS_VERSIONS: readonly TlsVersion[] = ['TLSv1.2', 'TLSv1.3'];

export interface Endpoint {
  host: string;
  port: number;
  /** SNI to send; none when unset. */
  servername?: string;
}

export interface HandshakeResult {
  resumed: boolean;
  protocol: string;
  /** The session to offer next time: the newest one the server issued (or renewed), or the one offered. */
  session: Buffer | undefined;
  /** Name of the key that encrypted the newest ticket (its first 16 bytes), if any ticket was seen. */
  ticketKeyName: string | undefined;
  /** SHA-256 fingerprint of the server's certificate. */
  certificateFingerprint: string;
  /** The software that answered the HTTP request, as far as its response shows (see serverSoftware). */
  serverSoftware: string | undefined;
}

export interface HandshakeOptions {
  version: TlsVersion;
  session?: Buffer;
  timeoutMs?: number;
}

const MAX_RESPONSE_HEAD = 16_384;

/**
 * The server software named by an HTTP/1 response head: the flavor that recognises it (HAProxy
 * by its lower-case header names, nginx by its Server header; src/flavors/), otherwise the
 * product in the Server header, otherwise undefined. Tickets never resume across server
 * software, whatever the keys.
 */
export function serverSoftware(responseHead: string): string | undefined {
  const head = responseHead.split('\r\n\r\n')[0] ?? '';
  const headerNames = head
    .split('\r\n')
    .slice(1)
    .map((line) => line.slice(0, line.indexOf(':')))
    .filter((name) => name.length > 0);
  if (headerNames.length === 0) return undefined;
  const server = head.split('\r\n').find((line) => /^server:/i.test(line));
  const product = server?.slice('server:'.length).trim().split(/[/\s]/)[0]?.toLowerCase() || undefined;
  const parsed = { headerNames, ...(product ? { serverProduct: product } : {}) };
  return Object.values(FLAVORS).find((flavor) => flavor.answered(parsed))?.name ?? product;
}

/**
 * One TLS connection: handshake (resuming `session` if given), one HTTP request so that
 * TLS 1.3 tickets arrive, then close. Certificates are not verified: this measures ticket
 * handling, not identity.
 */
export function handshake(endpoint: Endpoint, options: HandshakeOptions): Promise<HandshakeResult> {
  const timeoutMs = options.timeoutMs ?? 5000;
  return new Promise((resolve, reject) => {
    let session = options.session;
    let ticket: Buffer | undefined;
    let settled = false;
    let certificateFingerprint = '';
    let responseHead = '';
    const socket = tls.connect({
      host: endpoint.host,
      port: endpoint.port,
      ...(endpoint.servername ? { servername: endpoint.servername } : {}),
      minVersion: options.version,
      maxVersion: options.version,
      rejectUnauthorized: false,
      ...(options.session ? { session: options.session } : {}),
    });
    const finish = (error?: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (error) {
        socket.destroy();
        reject(error);
        return;
      }
      // getSession() also holds a ticket the server renewed on resumption, which TLS 1.2 clients
      // get without a 'session' event: a client that ignored it would fall behind the rotation.
      session = socket.getSession() ?? session;
      ticket = socket.getTLSTicket() ?? ticket;
      const result: HandshakeResult = {
        resumed: socket.isSessionReused(),
        protocol: socket.getProtocol() ?? 'unknown',
        session,
        ticketKeyName: ticket ? ticket.subarray(0, KEY_NAME_BYTES).toString('hex') : undefined,
        certificateFingerprint,
        serverSoftware: serverSoftware(responseHead),
      };
      socket.destroy();
      resolve(result);
    };
    const timer = setTimeout(
      () => finish(new Error(`TLS connection to ${endpoint.host}:${endpoint.port} timed out after ${timeoutMs} ms`)),
      timeoutMs,
    );
    socket.on('session', (newSession: Buffer) => {
      session = newSession;
      ticket = socket.getTLSTicket();
    });
    socket.once('secureConnect', () => {
      certificateFingerprint = socket.getPeerCertificate()?.fingerprint256 ?? '';
      socket.write(`GET / HTTP/1.1\r\nHost: ${endpoint.servername ?? endpoint.host}\r\nConnection: close\r\n\r\n`);
    });
    socket.on('data', (chunk: Buffer) => {
      if (responseHead.length < MAX_RESPONSE_HEAD && !responseHead.includes('\r\n\r\n')) responseHead += chunk.toString('latin1');
    });
    socket.once('end', () => finish());
    socket.once('error', (error) => finish(error));
  });
}
