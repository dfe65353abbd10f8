import { connect as connectTcp, isIP, type Socket } from 'node:net';
import { connect as connectTls } from 'node:tls';
import type { AuditRecord } from '../../core/audit-event.ts';
import type { AuditSink, SinkLog, SinkStats } from './audit-sink.ts';
import { backoffDelay } from './backoff.ts';
import { DeliveryQueue, type QueueEntry } from './delivery-queue.ts';
import type { TlsMaterial } from './tls-files.ts';

export interface SyslogStreamOptions {
  readonly host: string;
  readonly port: number;
  readonly transport: 'tcp' | 'tls';
  /** Re-read before each connection, so rotated client certificates are picked up. */
  readonly tlsMaterial?: () => TlsMaterial;
  readonly serverName?: string | undefined;
  readonly confirmIntervalMs: number;
  readonly timeoutMs: number;
  readonly minBackoffMs: number;
  readonly maxBackoffMs: number;
  readonly queueSize: number;
  readonly log: SinkLog;
}

interface Connection {
  readonly socket: Socket;
  /** Written on this connection, not yet confirmed. */
  readonly entries: QueueEntry[];
  ready: boolean;
  /** We started the close (FIN / close_notify) before the receiver closed its side. */
  endedByUs: boolean;
  sawEnd: boolean;
  failure: string | undefined;
  timer: NodeJS.Timeout | undefined;
  closed: Promise<void>;
}

/**
 * Syslog over TCP or TLS (RFC 6587 / RFC 5425 framing is done by `encode`).
 *
 * Plain syslog has no acknowledgement, and a TCP write that succeeded says nothing: when a
 * receiver restarts, the bytes in flight vanish without an error on the sending side. So a
 * record counts as delivered only when the connection it went out on was closed *by us* and the
 * receiver answered with its own orderly close: a receiver that closes with unread data sends a
 * reset instead. Connections are therefore short: after `confirmIntervalMs` with records on it,
 * a connection is retired (closed) and the next records open a new one. Every record on a
 * connection that ends any other way (reset, timeout, the receiver closing first, a refused
 * client certificate) goes back to the head of the queue and is sent again: at-least-once,
 * de-duplicated downstream by `event.id`.
 */
export class SyslogStreamSink implements AuditSink {
  readonly name: string;
  readonly #options: SyslogStreamOptions;
  readonly #encode: (record: AuditRecord) => Buffer;
  readonly #queue: DeliveryQueue;
  #current: Connection | undefined;
  readonly #retiring = new Set<Connection>();
  #failures = 0;
  #backoffTimer: NodeJS.Timeout | undefined;
  #flushing = 0;
  #closed = false;

  constructor(name: string, encode: (record: AuditRecord) => Buffer, options: SyslogStreamOptions) {
    this.name = name;
    this.#encode = encode;
    this.#options = options;
    this.#queue = new DeliveryQueue(options.queueSize);
  }

  write(record: AuditRecord): void {
    if (this.#closed) {
      this.#queue.refuse('shutdown');
      return;
    }
    if (this.#queue.offerEncoded(() => this.#encode(record))) this.#pump();
  }

  async flush(timeoutMs: number): Promise<void> {
    this.#flushing += 1;
    try {
      if (this.#current) this.#retire(this.#current);
      this.#pump();
      await this.#queue.whenEmpty(timeoutMs);
    } finally {
      this.#flushing -= 1;
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#backoffTimer);
    this.#queue.dropPending('shutdown');
    const open = [...this.#retiring, ...(this.#current ? [this.#current] : [])];
    for (const connection of open) connection.socket.destroy();
    await Promise.all(open.map((c) => c.closed));
  }

  stats(): Readonly<SinkStats> {
    return this.#queue.stats();
  }

  #pump(): void {
    if (this.#closed || this.#queue.pendingCount === 0) return;
    const connection = this.#current;
    if (!connection) {
      if (!this.#backoffTimer) this.#connect();
      return;
    }
    if (!connection.ready) return;
    const entries = this.#queue.take();
    for (const entry of entries) {
      connection.entries.push(entry);
      connection.socket.write(entry.data);
    }
    if (this.#flushing > 0) this.#retire(connection);
    else connection.timer ??= setTimeout(() => this.#retire(connection), this.#options.confirmIntervalMs);
  }

  #connect(): void {
    const { host, port, transport, timeoutMs } = this.#options;
    let socket: Socket;
    try {
      if (transport === 'tls') {
        const material = this.#options.tlsMaterial?.() ?? {};
        const serverName = this.#options.serverName ?? (isIP(host) === 0 ? host : undefined);
        socket = connectTls({
          host,
          port,
          ...material,
          ...(serverName ? { servername: serverName } : {}),
          minVersion: 'TLSv1.2',
        });
      } else {
        socket = connectTcp({ host, port });
      }
    } catch (error) {
      // Bad TLS material (e.g. a rotated key that does not match): same path as an unreachable receiver.
      this.#failed(`cannot connect: ${(error as Error).message}`);
      return;
    }
    let settle: () => void = () => {};
    const connection: Connection = {
      socket,
      entries: [],
      ready: false,
      endedByUs: false,
      sawEnd: false,
      failure: undefined,
      timer: setTimeout(() => socket.destroy(new Error(`no connection within ${timeoutMs} ms`)), timeoutMs),
      closed: new Promise<void>((resolve) => {
        settle = resolve;
      }),
    };
    this.#current = connection;
    socket.once(transport === 'tls' ? 'secureConnect' : 'connect', () => {
      clearTimeout(connection.timer);
      connection.timer = undefined;
      connection.ready = true;
      this.#pump();
    });
    socket.on('end', () => {
      connection.sawEnd = true;
      if (!connection.endedByUs) connection.failure ??= 'the receiver closed the connection';
    });
    socket.on('error', (error) => {
      connection.failure ??= error.message;
    });
    socket.on('close', () => {
      this.#settle(connection);
      settle();
    });
  }

  /** Stops writing to `connection` and starts the orderly close that confirms what was written. */
  #retire(connection: Connection): void {
    if (connection.endedByUs || !connection.ready) return;
    clearTimeout(connection.timer);
    connection.endedByUs = true;
    if (this.#current === connection) this.#current = undefined;
    this.#retiring.add(connection);
    connection.timer = setTimeout(
      () => connection.socket.destroy(new Error(`the receiver did not close within ${this.#options.timeoutMs} ms`)),
      this.#options.timeoutMs,
    );
    connection.socket.end();
    this.#pump();
  }

  #settle(connection: Connection): void {
    clearTimeout(connection.timer);
    this.#retiring.delete(connection);
    if (this.#current === connection) this.#current = undefined;
    const confirmed = connection.endedByUs && connection.sawEnd && connection.failure === undefined;
    if (confirmed) {
      if (!this.#queue.up)
        this.#options.log(`audit sink ${this.name}: delivering again after ${this.#failures} failed attempts`);
      this.#failures = 0;
      this.#queue.delivered(connection.entries);
    } else if (this.#closed) {
      this.#queue.drop(connection.entries, 'shutdown');
    } else {
      this.#queue.retry(connection.entries);
      if (connection.entries.length > 0 || !connection.ready || !connection.endedByUs) {
        this.#failed(connection.failure ?? 'the connection closed before the receiver confirmed');
        return;
      }
    }
    this.#pump();
  }

  /** Counts a failed attempt and waits (exponential backoff with jitter) before the next one. */
  #failed(reason: string): void {
    if (this.#closed) return;
    this.#failures += 1;
    const target = `${this.#options.transport}://${this.#options.host}:${this.#options.port}`;
    if (this.#queue.up)
      this.#options.log(
        `audit sink ${this.name}: EGW_AUDIT_SINK_UNAVAILABLE ${target}: ${reason}; records stay queued and are retried`,
      );
    this.#queue.markDown(reason);
    if (this.#backoffTimer) return;
    this.#backoffTimer = setTimeout(
      () => {
        this.#backoffTimer = undefined;
        this.#pump();
      },
      backoffDelay(this.#failures, this.#options.minBackoffMs, this.#options.maxBackoffMs),
    );
  }
}
