import type { Duplex } from 'node:stream';

export interface PipeResult {
  /** Bytes read from the client and written towards the upstream. */
  readonly bytesFromClient: number;
  /** Bytes read from the upstream and written back to the client. */
  readonly bytesToClient: number;
  /** Why the tunnel ended, when it was not a clean close by either side. */
  readonly error?: string;
}

export interface PipeOptions {
  /** Close both sides after this long without a byte in either direction (0 = never). */
  readonly idleTimeoutMs: number;
  /** Lets the caller end the tunnel (drain deadline); resolves the same promise. */
  readonly signal?: AbortSignal;
  /** Updated in place as bytes flow, for live views (admin /connections). */
  readonly counters?: { fromClient: number; toClient: number };
}

/**
 * Relays bytes both ways until both directions are done. Half-close is honoured: when one side
 * ends its writes, the other side's writes are ended and data still flows the other way.
 */
export function pipeSockets(client: Duplex, upstream: Duplex, options: PipeOptions): Promise<PipeResult> {
  return new Promise((resolve) => {
    let bytesFromClient = 0;
    let bytesToClient = 0;
    let error: string | undefined;
    let lastActivity = Date.now();
    let closed = 0;
    let idleTimer: NodeJS.Timeout | undefined;

    const finish = () => {
      closed += 1;
      if (closed < 2) return;
      clearInterval(idleTimer);
      options.signal?.removeEventListener('abort', onAbort);
      resolve({ bytesFromClient, bytesToClient, ...(error ? { error } : {}) });
    };
    const abortBoth = (why: string) => {
      error ??= why;
      client.destroy();
      upstream.destroy();
    };
    const onAbort = () => abortBoth(String(options.signal?.reason ?? 'aborted'));

    const counters = options.counters;
    client.on('data', (chunk: Buffer) => {
      bytesFromClient += chunk.length;
      if (counters) counters.fromClient = bytesFromClient;
      lastActivity = Date.now();
    });
    upstream.on('data', (chunk: Buffer) => {
      bytesToClient += chunk.length;
      if (counters) counters.toClient = bytesToClient;
      lastActivity = Date.now();
    });
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
      idleTimer = setInterval(() => {
        if (Date.now() - lastActivity >= options.idleTimeoutMs) abortBoth(`idle for ${options.idleTimeoutMs} ms`);
      }, Math.min(options.idleTimeoutMs, 1000)).unref();
    }
    if (options.signal?.aborted) onAbort();
    else options.signal?.addEventListener('abort', onAbort, { once: true });
  });
}
