import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { relayInto } from './relay-into.ts';

export interface PipeResult {
  /** Bytes read from the client and written towards the upstream. */
  readonly bytesFromClient: number;
  /** Bytes read from the upstream and written back to the client. */
  readonly bytesToClient: number;
  /** Why the tunnel ended, when it was not a clean close by either side. */
  readonly error?: string;
}

/** Live byte counts of an open tunnel, read on demand (admin /connections). */
export interface PipeCounters {
  readonly fromClient: number;
  readonly toClient: number;
}

export interface PipeOptions {
  /** Close both sides after this long without a byte in either direction (0 = never). */
  readonly idleTimeoutMs: number;
  /** Once one side has closed, how long the other may go without progress before it is destroyed. */
  readonly lingerMs?: number;
}

/**
 * Once one side is gone, the other only has buffered bytes left to flush. A TLS socket whose peer
 * vanished without close_notify can keep such a write pending for ever (no error, no 'close'), so
 * the flush gets this long without progress, capped by the idle timeout.
 */
export const CLOSE_LINGER_MS = 5_000;

/**
 * Counters that read the upstream socket's own byte counts: every byte of the tunnel crosses the
 * upstream TCP socket, and reading its counters costs nothing per chunk (a 'data' listener on
 * each side measurably slowed the relay; docs/benchmarks.md).
 */
export function upstreamCounters(upstream: Socket): PipeCounters {
  return {
    get fromClient() {
      return upstream.bytesWritten;
    },
    get toClient() {
      return upstream.bytesRead;
    },
  };
}

/**
 * Calls `fn` once when `stream` has closed, including when it closed before this was called (a
 * client that reset while the upstream was being dialled): 'close' is emitted only once.
 */
export function whenClosed(stream: Duplex, fn: () => void): void {
  let called = false;
  const once = () => {
    if (called) return;
    called = true;
    fn();
  };
  stream.once('close', once);
  if (stream.destroyed || stream.closed) setImmediate(once);
}

/** What a stream has handed on so far: a stalled flush leaves this unchanged. */
function flushProgress(stream: Duplex): string {
  return `${(stream as Partial<Socket>).bytesWritten ?? 0}/${stream.writableLength}`;
}

/**
 * Relays bytes both ways (`relayInto`: reused read buffers) until both sides have closed.
 * Half-close is honoured: when one side ends its writes, the other side's writes are ended and
 * data still flows the other way. The
 * idle timer is the upstream socket's own timeout, which every byte in either direction resets.
 * Every path ends in both sockets closed: a side already gone when the pipe is attached, a reset,
 * the idle timer, or the linger after the other side closed.
 */
export function pipeSockets(client: Duplex, upstream: Socket, options: PipeOptions): Promise<PipeResult> {
  return new Promise((resolve) => {
    let error: string | undefined;
    let closed = 0;
    const counters = upstreamCounters(upstream);
    const idleMs = options.idleTimeoutMs;
    const lingerMs = Math.min(options.lingerMs ?? CLOSE_LINGER_MS, idleMs > 0 ? idleMs : Number.POSITIVE_INFINITY);
    let lingerTimer: NodeJS.Timeout | undefined;

    const abortBoth = (why: string) => {
      error ??= why;
      client.destroy();
      upstream.destroy();
    };
    const onTimeout = () => abortBoth(`idle for ${idleMs} ms`);
    const finish = () => {
      closed += 1;
      if (closed < 2) return;
      clearTimeout(lingerTimer);
      upstream.removeListener('timeout', onTimeout);
      resolve({ bytesFromClient: counters.fromClient, bytesToClient: counters.toClient, ...(error ? { error } : {}) });
    };
    // The other side may flush what it holds, then closes; it is destroyed once it stops making
    // progress. (The socket's own inactivity timeout does not fire while a TLS write is pending.)
    const linger = (survivor: Duplex) => {
      if (survivor.destroyed) return;
      // pipe() has usually ended it already; end() on an ended stream builds (and drops) an
      // ERR_STREAM_ALREADY_FINISHED with its stack trace, on every connection.
      if (!survivor.writableEnded) survivor.end();
      let last = flushProgress(survivor);
      const check = () => {
        if (survivor.destroyed) return;
        const now = flushProgress(survivor);
        if (now === last) return abortBoth(`peer closed; no progress for ${lingerMs} ms while flushing`);
        last = now;
        lingerTimer = setTimeout(check, lingerMs);
      };
      lingerTimer = setTimeout(check, lingerMs);
    };

    client.on('error', (e: NodeJS.ErrnoException) => abortBoth(`client: ${e.code ?? e.message}`));
    upstream.on('error', (e: NodeJS.ErrnoException) => abortBoth(`upstream: ${e.code ?? e.message}`));
    upstream.on('timeout', onTimeout);
    if (idleMs > 0) upstream.setTimeout(idleMs);
    if (client.destroyed) abortBoth('client closed before the tunnel was attached');
    else {
      relayInto(client, upstream);
      relayInto(upstream, client);
    }
    whenClosed(client, () => {
      linger(upstream);
      finish();
    });
    whenClosed(upstream, () => {
      linger(client);
      finish();
    });
  });
}
