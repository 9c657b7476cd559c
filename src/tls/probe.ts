import tls from 'node:tls';
import { KEY_NAME_BYTES } from '../core/keyset.js';

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
}

export interface HandshakeOptions {
  version: TlsVersion;
  session?: Buffer;
  timeoutMs?: number;
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
    socket.on('data', () => undefined);
    socket.once('end', () => finish());
    socket.once('error', (error) => finish(error));
  });
}
