import { createSocket, type Socket } from 'node:dgram';
import { isIP } from 'node:net';
import type { AuditRecord } from '../../core/audit-event.ts';
import type { AuditSink, SinkLog, SinkStats } from './audit-sink.ts';
import { backoffDelay } from './backoff.ts';
import { DeliveryQueue } from './delivery-queue.ts';

/** The largest UDP payload over IPv4; anything bigger cannot be sent as one datagram. */
const MAX_DATAGRAM = 65_507;

export interface SyslogUdpOptions {
  readonly host: string;
  readonly port: number;
  readonly minBackoffMs: number;
  readonly maxBackoffMs: number;
  readonly queueSize: number;
  readonly log: SinkLog;
}

/** How often an ICMP "port unreachable" is logged while it keeps coming back. */
const ICMP_LOG_INTERVAL_MS = 60_000;

/**
 * Syslog over UDP (RFC 5426): one message per datagram, no framing. UDP cannot confirm
 * anything: `delivered` means the kernel sent the datagram. An ICMP "port unreachable" for an
 * earlier datagram arrives later as a socket error (ECONNREFUSED on the connected socket); it
 * cannot be tied to a datagram, so it is logged (once a minute at most) and shown as `lastError`,
 * and the sink opens a fresh socket. A send that fails outright (no route, DNS) is retried.
 */
export class SyslogUdpSink implements AuditSink {
  readonly name: string;
  readonly #options: SyslogUdpOptions;
  readonly #encode: (record: AuditRecord) => Buffer;
  readonly #queue: DeliveryQueue;
  #socket: Socket | undefined;
  #connected: Promise<Socket> | undefined;
  #sending = false;
  #failures = 0;
  #backoffTimer: NodeJS.Timeout | undefined;
  #closed = false;
  #icmpLoggedAt = 0;

  constructor(name: string, encode: (record: AuditRecord) => Buffer, options: SyslogUdpOptions) {
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
    if (this.#queue.offerEncoded(() => this.#encode(record), MAX_DATAGRAM)) void this.#pump();
  }

  async flush(timeoutMs: number): Promise<void> {
    await this.#queue.whenEmpty(timeoutMs);
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#backoffTimer);
    this.#queue.dropPending('shutdown');
    this.#socket?.close();
    this.#socket = undefined;
  }

  stats(): Readonly<SinkStats> {
    return this.#queue.stats();
  }

  async #pump(): Promise<void> {
    if (this.#sending || this.#backoffTimer || this.#closed) return;
    this.#sending = true;
    try {
      while (!this.#closed && this.#queue.pendingCount > 0) {
        const [entry] = this.#queue.take(1);
        if (!entry) break;
        try {
          const socket = await this.#open();
          await new Promise<void>((resolve, reject) =>
            socket.send(entry.data, (error) => (error ? reject(error) : resolve())),
          );
          if (!this.#queue.up)
            this.#options.log(`audit sink ${this.name}: sending again after ${this.#failures} failed attempts`);
          this.#failures = 0;
          this.#queue.delivered([entry]);
        } catch (error) {
          this.#queue.retry([entry]);
          this.#failed((error as Error).message);
          break;
        }
      }
    } finally {
      this.#sending = false;
    }
  }

  #open(): Promise<Socket> {
    this.#connected ??= new Promise<Socket>((resolve, reject) => {
      const socket = createSocket(isIP(this.#options.host) === 6 ? 'udp6' : 'udp4');
      socket.on('error', (error) => {
        // Typically ICMP port unreachable for an earlier datagram: say so, use a fresh socket next time.
        this.#queue.noteError(error.message);
        if (Date.now() - this.#icmpLoggedAt >= ICMP_LOG_INTERVAL_MS) {
          this.#icmpLoggedAt = Date.now();
          this.#options.log(
            `audit sink ${this.name}: EGW_AUDIT_SINK_UNAVAILABLE udp://${this.#options.host}:${this.#options.port}: ${error.message}; UDP cannot tell which datagrams were lost (use tcp or tls)`,
          );
        }
        this.#drop(socket);
        reject(error);
      });
      socket.connect(this.#options.port, this.#options.host, () => {
        this.#socket = socket;
        resolve(socket);
      });
    });
    return this.#connected;
  }

  #drop(socket: Socket): void {
    if (this.#socket === socket) this.#socket = undefined;
    this.#connected = undefined;
    try {
      socket.close();
    } catch {
      // already closed
    }
  }

  #failed(reason: string): void {
    if (this.#closed) return;
    this.#failures += 1;
    if (this.#queue.up)
      this.#options.log(
        `audit sink ${this.name}: EGW_AUDIT_SINK_UNAVAILABLE udp://${this.#options.host}:${this.#options.port}: ${reason}; records stay queued and are retried`,
      );
    this.#queue.markDown(reason);
    if (this.#socket) this.#drop(this.#socket);
    this.#backoffTimer = setTimeout(
      () => {
        this.#backoffTimer = undefined;
        void this.#pump();
      },
      backoffDelay(this.#failures, this.#options.minBackoffMs, this.#options.maxBackoffMs),
    );
  }
}
