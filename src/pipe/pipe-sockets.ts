import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

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
  /** Lets the caller end the tunnel (drain deadline); resolves the same promise. */
  readonly signal?: AbortSignal;
}

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
 * Relays bytes both ways until both directions are done. Half-close is honoured: when one side
 * ends its writes, the other side's writes are ended and data still flows the other way. The
 * idle timer is the upstream socket's own timeout, which every byte in either direction resets.
 */
export function pipeSockets(client: Duplex, upstream: Socket, options: PipeOptions): Promise<PipeResult> {
  return new Promise((resolve) => {
    let error: string | undefined;
    let closed = 0;
    const counters = upstreamCounters(upstream);

    const finish = () => {
      closed += 1;
      if (closed < 2) return;
      options.signal?.removeEventListener('abort', onAbort);
      resolve({ bytesFromClient: counters.fromClient, bytesToClient: counters.toClient, ...(error ? { error } : {}) });
    };
    const abortBoth = (why: string) => {
      error ??= why;
      client.destroy();
      upstream.destroy();
    };
    const onAbort = () => abortBoth(String(options.signal?.reason ?? 'aborted'));

    client.pipe(upstream);
    upstream.pipe(client);
    client.on('error', (e: NodeJS.ErrnoException) => abortBoth(`client: ${e.code ?? e.message}`));
    upstream.on('error', (e: NodeJS.ErrnoException) => abortBoth(`upstream: ${e.code ?? e.message}`));
    client.once('close', () => {
      if (!upstream.writableEnded) upstream.end();
      finish();
    });
    upstream.once('close', () => {
      if (!client.writableEnded) client.end();
      finish();
    });
    if (options.idleTimeoutMs > 0) {
      upstream.setTimeout(options.idleTimeoutMs, () => abortBoth(`idle for ${options.idleTimeoutMs} ms`));
    }
    if (options.signal?.aborted) onAbort();
    else options.signal?.addEventListener('abort', onAbort, { once: true });
  });
}
