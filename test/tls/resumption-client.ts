import { readFileSync } from 'node:fs';
import { connect, type TLSSocket } from 'node:tls';
import type { WrittenLeaf } from '../helpers/test-pki.ts';

export interface ResumptionAttempt {
  /** Whether the client saw its offered session resumed. */
  readonly reused: boolean;
  /** The first session (ticket) the server sent on this connection, if one came within the wait. */
  readonly session: Buffer | undefined;
  /** Set when the server reset or closed the connection before a ticket came. */
  readonly closedEarly: boolean;
}

/**
 * One TLS connection as a reconnecting workload makes it: offers `session` if given, waits for
 * the handshake and the server's ticket, and hangs up without sending or reading application
 * data (the case where tickets must be flushed right after the handshake).
 */
export function connectOnce(
  port: number,
  client: WrittenLeaf,
  caPath: string,
  options: {
    session?: Buffer;
    maxVersion?: 'TLSv1.2' | 'TLSv1.3';
    waitMs?: number;
    /**
     * Resolve at the handshake, for callers that read only `reused`: a resumed TLS 1.3 session
     * gets no new ticket here, so waiting for one would always run to `waitMs`.
     */
    untilHandshake?: boolean;
    /**
     * After the handshake, send this and resolve once it comes back (a tcp-mode listener whose
     * upstream echoes): the gateway has then permitted and counted the connection.
     */
    untilEcho?: string;
  } = {},
): Promise<ResumptionAttempt> {
  return new Promise((resolve) => {
    let session: Buffer | undefined;
    let reused = false;
    let settled = false;
    const socket: TLSSocket = connect({
      host: '127.0.0.1',
      port,
      ca: readFileSync(caPath),
      cert: readFileSync(client.certPath),
      key: readFileSync(client.keyPath),
      servername: 'localhost',
      ...(options.session ? { session: options.session } : {}),
      ...(options.maxVersion ? { maxVersion: options.maxVersion } : {}),
    });
    const done = (closedEarly: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ reused, session, closedEarly });
    };
    const timer = setTimeout(() => done(false), options.waitMs ?? 3000);
    let secure = false;
    socket.on('secureConnect', () => {
      secure = true;
      reused = socket.isSessionReused();
      // TLS 1.2 sends a ticket inside the handshake, and none when it resumed one.
      if (options.untilEcho) socket.write(options.untilEcho);
      else if (options.untilHandshake || session || (reused && socket.getProtocol() === 'TLSv1.2')) done(false);
    });
    let echoed = '';
    if (options.untilEcho)
      socket.on('data', (chunk: Buffer) => {
        echoed += chunk.toString();
        if (echoed.includes(options.untilEcho as string)) done(false);
      });
    socket.on('session', (ticket: Buffer) => {
      session ??= ticket;
      if (secure && !options.untilEcho) done(false);
    });
    socket.on('error', () => done(true));
    socket.on('close', () => done(true));
  });
}
