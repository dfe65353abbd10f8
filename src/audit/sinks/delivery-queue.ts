import type { DropReason, SinkStats } from './audit-sink.ts';

/** One encoded record as it travels to a receiver. `attempts` counts sends so far. */
export interface QueueEntry {
  readonly data: Buffer;
  attempts: number;
}

/** Memory one sink's queue may hold, whatever the record count: records can be large (URLs). */
export const DEFAULT_QUEUE_BYTES = 32 * 1024 * 1024;

/**
 * A bounded FIFO plus the delivery ledger of one sink. Entries move pending → in flight →
 * delivered | dropped | back to pending (retry). The bounds (records and bytes) cover pending
 * *and* in-flight entries, so putting failed entries back can never overflow them, and a full
 * queue drops the newest record (the one being offered) rather than blocking the caller.
 */
export class DeliveryQueue {
  readonly capacity: number;
  readonly maxBytes: number;
  #pending: QueueEntry[] = [];
  #inFlight = 0;
  #bytes = 0;
  #received = 0;
  #delivered = 0;
  #retried = 0;
  #dropped = 0;
  readonly #droppedBy: Partial<Record<DropReason, number>> = {};
  #up = true;
  #lastError: string | undefined;
  #lastErrorAt: string | undefined;
  #idleWaiters: Array<() => void> = [];

  constructor(capacity: number, maxBytes = DEFAULT_QUEUE_BYTES) {
    this.capacity = capacity;
    this.maxBytes = maxBytes;
  }

  /** Bytes held by pending and in-flight entries. */
  get bytes(): number {
    return this.#bytes;
  }

  get pendingCount(): number {
    return this.#pending.length;
  }

  get size(): number {
    return this.#pending.length + this.#inFlight;
  }

  /** Accepts one encoded record, or counts it as dropped. Returns whether it was queued. */
  offer(data: Buffer): boolean {
    this.#received += 1;
    if (this.size >= this.capacity || this.#bytes + data.length > this.maxBytes) {
      this.#count('queue_full', 1);
      return false;
    }
    this.#pending.push({ data, attempts: 0 });
    this.#bytes += data.length;
    return true;
  }

  /** Encodes and queues one record; a formatter error or an oversized record is a counted drop. */
  offerEncoded(encode: () => Buffer, maxBytes = Number.POSITIVE_INFINITY): boolean {
    // A full queue drops before formatting: an overloaded sink should not cost the data path more.
    if (this.size >= this.capacity) {
      this.#received += 1;
      this.#count('queue_full', 1);
      return false;
    }
    let data: Buffer;
    try {
      data = encode();
    } catch {
      this.refuse('format_error');
      return false;
    }
    if (data.length > maxBytes) {
      this.refuse('too_large');
      return false;
    }
    return this.offer(data);
  }

  /** Counts a record that never became an entry (e.g. it could not be formatted). */
  refuse(reason: DropReason): void {
    this.#received += 1;
    this.#count(reason, 1);
  }

  /** Moves up to `maxCount` entries (and `maxBytes`, at least one entry) from pending to in flight. */
  take(maxCount = Number.POSITIVE_INFINITY, maxBytes = Number.POSITIVE_INFINITY): QueueEntry[] {
    let count = 0;
    let bytes = 0;
    while (count < this.#pending.length && count < maxCount) {
      const next = this.#pending[count] as QueueEntry;
      if (count > 0 && bytes + next.data.length > maxBytes) break;
      bytes += next.data.length;
      count += 1;
    }
    const taken = this.#pending.splice(0, count);
    for (const entry of taken) entry.attempts += 1;
    this.#inFlight += taken.length;
    return taken;
  }

  delivered(entries: readonly QueueEntry[]): void {
    if (entries.length === 0) return;
    this.#inFlight -= entries.length;
    this.#release(entries);
    this.#delivered += entries.length;
    this.markUp();
    this.#checkIdle();
  }

  /** Puts in-flight entries back at the head of the queue, oldest first; they count as retried when re-sent. */
  retry(entries: readonly QueueEntry[]): void {
    if (entries.length === 0) return;
    this.#inFlight -= entries.length;
    this.#retried += entries.length;
    this.#pending.unshift(...entries);
  }

  drop(entries: readonly QueueEntry[], reason: DropReason): void {
    if (entries.length === 0) return;
    this.#inFlight -= entries.length;
    this.#release(entries);
    this.#count(reason, entries.length);
    this.#checkIdle();
  }

  /** Drops everything still pending (shutdown); in-flight entries are the sender's to settle. */
  dropPending(reason: DropReason): number {
    const count = this.#pending.length;
    this.#release(this.#pending);
    this.#pending = [];
    if (count > 0) this.#count(reason, count);
    this.#checkIdle();
    return count;
  }

  markUp(): void {
    this.#up = true;
  }

  markDown(error: string): void {
    this.#up = false;
    this.noteError(error);
  }

  noteError(error: string): void {
    this.#lastError = error;
    this.#lastErrorAt = new Date().toISOString();
  }

  get up(): boolean {
    return this.#up;
  }

  /** Resolves when nothing is pending or in flight, or after `timeoutMs`. Returns whether it emptied. */
  whenEmpty(timeoutMs: number): Promise<boolean> {
    if (this.size === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#idleWaiters = this.#idleWaiters.filter((w) => w !== waiter);
        resolve(false);
      }, timeoutMs);
      const waiter = () => {
        clearTimeout(timer);
        resolve(true);
      };
      this.#idleWaiters.push(waiter);
    });
  }

  stats(): SinkStats {
    return {
      received: this.#received,
      delivered: this.#delivered,
      retried: this.#retried,
      dropped: this.#dropped,
      queued: this.size,
      droppedBy: { ...this.#droppedBy },
      up: this.#up,
      ...(this.#lastError ? { lastError: this.#lastError, lastErrorAt: this.#lastErrorAt } : {}),
    };
  }

  #release(entries: readonly QueueEntry[]): void {
    for (const entry of entries) this.#bytes -= entry.data.length;
  }

  #count(reason: DropReason, count: number): void {
    this.#dropped += count;
    this.#droppedBy[reason] = (this.#droppedBy[reason] ?? 0) + count;
  }

  #checkIdle(): void {
    if (this.size !== 0) return;
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const waiter of waiters) waiter();
  }
}
