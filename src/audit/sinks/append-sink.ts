import { close, mkdir, open, write } from 'node:fs';
import { dirname } from 'node:path';
import { promisify } from 'node:util';
import type { AuditRecord } from '../../core/audit-event.ts';
import type { AuditSink, SinkLog, SinkStats } from './audit-sink.ts';
import { backoffDelay, sleep } from './backoff.ts';
import { DeliveryQueue } from './delivery-queue.ts';

const openAsync = promisify(open);
const closeAsync = promisify(close);
const mkdirAsync = promisify(mkdir);
const writeAsync = promisify(write);

/** Writes are grouped up to this size: one syscall for many records when the queue backs up. */
const MAX_WRITE_BYTES = 256 * 1024;
/**
 * The first record after an idle spell waits this long for company before the write starts. A
 * write is a thread-pool round trip and a syscall (~60 µs of CPU per connection for its two records
 * when each went alone); a gateway busy enough for that to matter sends several records per window.
 */
const WRITE_COALESCE_MS = 5;

export type AppendTarget = { readonly kind: 'stdout' } | { readonly kind: 'file'; readonly path: string };

/**
 * One line per record to stdout or an append-only file. Writes go through libuv's thread pool
 * (`fs.write`), never `process.stdout`: on Linux a piped stdout is synchronous, so a stalled
 * log collector would otherwise stall the data path. Here a stall only fills the bounded queue.
 * `delivered` means the kernel accepted the bytes. `reopen()` (SIGUSR1) makes the next write
 * open the path again, for logrotate's rename-then-signal.
 */
export class AppendSink implements AuditSink {
  readonly name: string;
  readonly #target: AppendTarget;
  readonly #encode: (record: AuditRecord) => string;
  readonly #queue: DeliveryQueue;
  readonly #log: SinkLog;
  #fd: number | undefined;
  #draining: Promise<void> | undefined;
  #reopenRequested = false;
  #closed = false;
  #coalesce: NodeJS.Timeout | undefined;
  readonly #stop = new AbortController();

  constructor(
    name: string,
    target: AppendTarget,
    encode: (record: AuditRecord) => string,
    options: { queueSize: number; log: SinkLog },
  ) {
    this.name = name;
    this.#target = target;
    this.#encode = encode;
    this.#queue = new DeliveryQueue(options.queueSize);
    this.#log = options.log;
  }

  write(record: AuditRecord): void {
    if (this.#closed) {
      this.#queue.refuse('shutdown');
      return;
    }
    if (this.#queue.offerEncoded(() => Buffer.from(`${this.#encode(record)}\n`, 'utf8'))) this.#schedule();
  }

  /** A running drain takes the record on its next turn; an idle sink starts one shortly. */
  #schedule(): void {
    if (this.#draining || this.#coalesce) return;
    this.#coalesce = setTimeout(() => this.#kick(), WRITE_COALESCE_MS);
  }

  reopen(): void {
    if (this.#target.kind !== 'file') return;
    this.#reopenRequested = true;
    // Idle: let go of the rotated file now, so logrotate can compress it right away.
    if (!this.#draining) this.#kick(true);
  }

  async flush(timeoutMs: number): Promise<void> {
    this.#kick();
    await this.#queue.whenEmpty(timeoutMs);
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#coalesce);
    this.#queue.dropPending('shutdown');
    this.#stop.abort();
    await this.#draining;
    this.#queue.dropPending('shutdown'); // a batch that failed while closing went back to pending
    await this.#closeFd();
  }

  stats(): Readonly<SinkStats> {
    return this.#queue.stats();
  }

  #kick(evenIfEmpty = false): void {
    clearTimeout(this.#coalesce);
    this.#coalesce = undefined;
    if (this.#draining || (this.#queue.pendingCount === 0 && !evenIfEmpty)) return;
    this.#draining = this.#drain().finally(() => {
      this.#draining = undefined;
      if (this.#queue.pendingCount > 0 && !this.#closed) this.#kick();
    });
  }

  async #drain(): Promise<void> {
    let failures = 0;
    for (;;) {
      if (this.#reopenRequested) {
        this.#reopenRequested = false;
        await this.#closeFd();
      }
      if (this.#closed || this.#queue.pendingCount === 0) return;
      const batch = this.#queue.take(Number.POSITIVE_INFINITY, MAX_WRITE_BYTES);
      const buffer = batch.length === 1 ? (batch[0]?.data as Buffer) : Buffer.concat(batch.map((e) => e.data));
      try {
        this.#fd ??= await this.#open();
        const fd = this.#fd;
        await writeFully(fd, buffer, this.#stop.signal);
        if (!this.#queue.up) this.#log(`audit sink ${this.name}: writing again after ${failures} failed attempts`);
        this.#queue.delivered(batch);
        failures = 0;
      } catch (error) {
        failures += 1;
        const message = (error as Error).message;
        if (this.#queue.up)
          this.#log(
            `audit sink ${this.name}: EGW_AUDIT_SINK_UNAVAILABLE ${message}; records stay queued and are retried`,
          );
        this.#queue.markDown(message);
        this.#queue.retry(batch);
        await this.#closeFd();
        await sleep(backoffDelay(failures, 200, 30_000), this.#stop.signal);
      }
    }
  }

  async #open(): Promise<number> {
    if (this.#target.kind === 'stdout') return 1;
    await mkdirAsync(dirname(this.#target.path), { recursive: true });
    return openAsync(this.#target.path, 'a', 0o640);
  }

  async #closeFd(): Promise<void> {
    const fd = this.#fd;
    this.#fd = undefined;
    if (fd !== undefined && this.#target.kind === 'file') await closeAsync(fd).catch(() => {});
  }
}

/**
 * fs.write may write less than asked (pipes); a non-blocking stdout answers EAGAIN while full.
 * `signal` (close) ends the wait, so a stdout nobody reads cannot hold up shutdown for ever.
 */
async function writeFully(fd: number, buffer: Buffer, signal: AbortSignal): Promise<void> {
  let offset = 0;
  while (offset < buffer.length) {
    if (signal.aborted) throw new Error(`sink closed after ${offset} of ${buffer.length} bytes`);
    try {
      const { bytesWritten } = await writeAsync(fd, buffer, offset, buffer.length - offset, null);
      offset += bytesWritten;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EAGAIN') {
        if (offset > 0)
          throw Object.assign(new Error(`${(error as Error).message} after ${offset} of ${buffer.length} bytes`), {
            cause: error,
          });
        throw error;
      }
      await sleep(20, signal);
    }
  }
}
