import { isIP, type Socket } from 'node:net';
import { GatewayError } from '../core/errors.ts';
import type { ParentProxy } from '../policy/compile-policy.ts';
import { dialUpstream } from './dial-upstream.ts';

/** The most a parent's CONNECT answer head may take: the parent is trusted by config, not unbounded. */
export const MAX_PARENT_ANSWER_BYTES = 16 * 1024;

export interface ParentDial {
  readonly parent: ParentProxy;
  /** The destination as decided; the parent gets its name (or IP literal) and port. */
  readonly target: { readonly host: string; readonly port: number };
  /** SNAT source address of the connection to the parent; undefined lets the OS choose. */
  readonly localAddress?: string;
  /** One deadline for resolving and dialling the parent and reading its answer (timeouts.connect). */
  readonly timeoutMs: number;
  /** Resolves the parent's host name (an IP literal is used as it is). */
  readonly resolve: (host: string) => Promise<string>;
}

export interface ParentTunnel {
  /** Paused, with any bytes that followed the answer put back in front; `pipe()` resumes it. */
  readonly socket: Socket;
  readonly parentIp: string;
  /** Bytes of the CONNECT exchange itself, so tunnel byte counts can leave them out. */
  readonly handshake: { readonly written: number; readonly read: number };
}

/** `host:port`, with an IPv6 literal in brackets (RFC 9110 authority-form). */
export function authorityOf(target: { readonly host: string; readonly port: number }): string {
  return `${isIP(target.host) === 6 ? `[${target.host}]` : target.host}:${target.port}`;
}

function unreachable(parent: ParentProxy, why: string, cause?: unknown): GatewayError {
  return new GatewayError('EGW_UPSTREAM_PARENT_UNREACHABLE', `parent proxy ${parent.url}: ${why}`, {
    ...(cause === undefined ? {} : { cause }),
  });
}

function refused(parent: ParentProxy, why: string, receivedStatus?: number): GatewayError {
  return new GatewayError('EGW_UPSTREAM_PARENT_REFUSED', `parent proxy ${parent.url} ${why}`, {
    ...(receivedStatus === undefined ? {} : { details: { receivedStatus } }),
  });
}

/** The parent's IP: its literal, else one lookup; any failure is the parent's unreachability. */
export async function parentAddress(parent: ParentProxy, resolve: ParentDial['resolve']): Promise<string> {
  if (isIP(parent.host) !== 0) return parent.host;
  try {
    return await resolve(parent.host);
  } catch (error) {
    throw unreachable(parent, `cannot resolve ${parent.host}: ${(error as Error).message}`, error);
  }
}

interface AnswerHead {
  readonly status: number;
  readonly headBytes: number;
  readonly rest: Buffer;
}

/** Parses a complete answer head (ending in CRLF CRLF); undefined status for an unreadable one. */
function parseHead(buffered: Buffer, end: number): AnswerHead & { statusLine: string } {
  const statusLine = buffered.subarray(0, buffered.indexOf('\r\n')).toString('latin1');
  const match = /^HTTP\/1\.[01] (\d{3})(?: |$)/.exec(statusLine);
  return { status: match ? Number(match[1]) : 0, headBytes: end + 4, rest: buffered.subarray(end + 4), statusLine };
}

/**
 * Reads the parent's answer head: at most MAX_PARENT_ANSWER_BYTES, before `timeoutMs`. Bytes
 * after the head (the destination's first bytes) are put back on the socket for the pipe.
 */
function readAnswer(socket: Socket, parent: ParentProxy, timeoutMs: number): Promise<AnswerHead> {
  return new Promise((resolve, reject) => {
    let buffered = Buffer.alloc(0);
    const done = (error?: GatewayError, head?: AnswerHead) => {
      clearTimeout(timer);
      socket.off('data', onData).off('error', onClose).off('close', onClose);
      socket.pause();
      if (error) reject(error);
      else resolve(head as AnswerHead);
    };
    const onClose = () => done(unreachable(parent, 'closed the connection before answering the CONNECT'));
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      const end = buffered.indexOf('\r\n\r\n');
      if (end === -1 || end + 4 > MAX_PARENT_ANSWER_BYTES) {
        if (buffered.length > MAX_PARENT_ANSWER_BYTES)
          done(refused(parent, `sent an answer head over ${MAX_PARENT_ANSWER_BYTES} bytes`));
        return;
      }
      const head = parseHead(buffered, end);
      if (head.status === 0)
        return done(refused(parent, `sent no HTTP status line: ${JSON.stringify(head.statusLine.slice(0, 80))}`));
      if (head.status < 200 || head.status > 299)
        return done(refused(parent, `answered ${head.statusLine.slice(0, 120)}`, head.status));
      done(undefined, head);
    };
    const timer = setTimeout(
      () => done(unreachable(parent, `no complete answer to the CONNECT within ${timeoutMs} ms`)),
      timeoutMs,
    );
    socket.on('data', onData).on('error', onClose).on('close', onClose);
  });
}

/**
 * Opens a tunnel to `target` through the rule's parent proxy: dial the parent from the SNAT
 * address, send `CONNECT host:port`, accept only a 2xx answer. The parent is the operator's
 * choice, so its address is not judged by the SSRF guard; the destination already was.
 */
export async function dialViaParent(options: ParentDial): Promise<ParentTunnel> {
  const { parent } = options;
  const deadline = Date.now() + options.timeoutMs;
  const parentIp = await parentAddress(parent, options.resolve);
  let socket: Socket;
  try {
    socket = await dialUpstream({
      ip: parentIp,
      port: parent.port,
      timeoutMs: Math.max(1, deadline - Date.now()),
      ...(options.localAddress ? { localAddress: options.localAddress } : {}),
    });
  } catch (error) {
    throw unreachable(parent, (error as Error).message, error);
  }
  const authority = authorityOf(options.target);
  const request = `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`;
  socket.write(request);
  try {
    const head = await readAnswer(socket, parent, Math.max(1, deadline - Date.now()));
    if (head.rest.length > 0) socket.unshift(head.rest);
    return { socket, parentIp, handshake: { written: Buffer.byteLength(request), read: head.headBytes } };
  } catch (error) {
    socket.destroy();
    throw error;
  }
}
