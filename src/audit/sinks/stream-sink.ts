import { once } from 'node:events';
import { type WriteStream, createWriteStream, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Writable } from 'node:stream';
import type { AuditSink, SinkStats } from './audit-sink.ts';

/**
 * Writes one line per record to a stream (stdout, or an append-only file). Records that would
 * grow the stream's buffer past `maxQueueBytes` are dropped and counted instead of blocking
 * the data path.
 */
export class StreamSink implements AuditSink {
  readonly name: string;
  #stream: Writable;
  readonly #open: (() => Writable) | undefined;
  readonly #maxQueueBytes: number;
  readonly #stats: SinkStats = { delivered: 0, retried: 0, dropped: 0, queued: 0 };

  constructor(name: string, open: () => Writable, options: { maxQueueBytes?: number; reopenable?: boolean } = {}) {
    this.name = name;
    this.#open = options.reopenable ? open : undefined;
    this.#stream = open();
    this.#maxQueueBytes = options.maxQueueBytes ?? 8 * 1024 * 1024;
  }

  write(line: string): void {
    if (this.#stream.writableLength > this.#maxQueueBytes || this.#stream.destroyed) {
      this.#stats.dropped += 1;
      return;
    }
    this.#stream.write(`${line}\n`);
    this.#stats.delivered += 1;
  }

  async flush(timeoutMs: number): Promise<void> {
    if (this.#stream.writableLength === 0) return;
    await Promise.race([once(this.#stream, 'drain'), new Promise((r) => setTimeout(r, timeoutMs).unref())]);
  }

  reopen(): void {
    if (!this.#open) return;
    const old = this.#stream;
    this.#stream = this.#open();
    old.end();
  }

  async close(): Promise<void> {
    if (this.#stream === process.stdout || this.#stream === process.stderr) return this.flush(2000);
    await new Promise<void>((resolve) => this.#stream.end(() => resolve()));
  }

  stats(): Readonly<SinkStats> {
    return { ...this.#stats, queued: this.#stream.writableLength > 0 ? 1 : 0 };
  }
}

export function openAppendFile(path: string): () => WriteStream {
  return () => {
    mkdirSync(dirname(path), { recursive: true });
    const stream = createWriteStream(path, { flags: 'a', mode: 0o640 });
    stream.on('error', (error) => process.stderr.write(`audit file ${path}: ${error.message}\n`));
    return stream;
  };
}
