import { randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import type * as Undici from 'undici';
import type { AuditRecord } from '../../core/audit-event.ts';
import { OBSERVER } from '../observer.ts';
import type { AuditSink, SinkLog, SinkStats } from './audit-sink.ts';
import { backoffDelay, sleep } from './backoff.ts';
import { DeliveryQueue, type QueueEntry } from './delivery-queue.ts';
import type { TlsMaterial } from './tls-files.ts';

// undici (CommonJS) costs 0.1-0.3 s to load: it is required when the first HEC sink is built, not at start.
const requireCjs = createRequire(import.meta.url);
let undici: typeof Undici | undefined;
const lib = (): typeof Undici => {
  undici ??= requireCjs('undici') as typeof Undici;
  return undici;
};

export interface HecOptions {
  readonly url: string;
  /** Returns the token; `refresh` asks for a fresh read (tokenFile) after a 401/403. */
  readonly token: (refresh: boolean) => string;
  readonly tls?: TlsMaterial;
  readonly batchSize: number;
  readonly maxBatchBytes: number;
  readonly flushIntervalMs: number;
  readonly timeoutMs: number;
  /** Undefined: keep retrying a retryable failure (the queue bound still applies). */
  readonly maxRetries: number | undefined;
  readonly minBackoffMs: number;
  readonly maxBackoffMs: number;
  readonly queueSize: number;
  readonly log: SinkLog;
}

type Outcome = { kind: 'ok' } | { kind: 'retry'; reason: string } | { kind: 'reject'; status: number; reason: string };

/**
 * Splunk HEC envelope for one record: `time` in epoch seconds with milliseconds, the gateway's
 * host, and `event` as an object (ECS, already JSON) or a string (CEF, text).
 */
export function hecEnvelope(
  record: AuditRecord,
  body: string,
  bodyIsJson: boolean,
  meta: {
    host?: string | undefined;
    source?: string | undefined;
    sourcetype?: string | undefined;
    index?: string | undefined;
  },
): string {
  const time = (Date.parse(record.timestamp) / 1000).toFixed(3);
  const fields = [`"time":${time}`, `"host":${JSON.stringify(meta.host ?? OBSERVER.hostname)}`];
  if (meta.source) fields.push(`"source":${JSON.stringify(meta.source)}`);
  if (meta.sourcetype) fields.push(`"sourcetype":${JSON.stringify(meta.sourcetype)}`);
  if (meta.index) fields.push(`"index":${JSON.stringify(meta.index)}`);
  fields.push(`"event":${bodyIsJson ? body : JSON.stringify(body)}`);
  return `{${fields.join(',')}}`;
}

/** Splunk's answers worth retrying: busy (503), server errors, throttling and request timeouts. */
export function isRetryableStatus(status: number): boolean {
  return status >= 500 || status === 429 || status === 408;
}

/**
 * Splunk HTTP Event Collector: batches of concatenated JSON envelopes (no array, no commas),
 * `Authorization: Splunk <token>`, sent with undici. A batch goes when it holds `batchSize`
 * records or `maxBatchBytes`, or `flushIntervalMs` after its first record. 5xx/429/408 and
 * network errors are retried with exponential backoff and jitter; other 4xx (bad token, bad
 * data) are permanent: the batch is dropped, counted as `rejected` and logged.
 * A 200 means "accepted", not "indexed" (indexer acknowledgement is not implemented).
 */
export class HecSink implements AuditSink {
  readonly name: string;
  readonly #options: HecOptions;
  readonly #encode: (record: AuditRecord) => Buffer;
  readonly #queue: DeliveryQueue;
  readonly #agent: Undici.Agent;
  readonly #channel = randomUUID();
  readonly #stop = new AbortController();
  #timer: NodeJS.Timeout | undefined;
  #due = false;
  #sending: Promise<void> | undefined;
  #flushing = 0;
  #closed = false;
  #rejectLogged = false;
  #failures = 0;

  constructor(name: string, encode: (record: AuditRecord) => Buffer, options: HecOptions) {
    this.name = name;
    this.#encode = encode;
    this.#options = options;
    this.#queue = new DeliveryQueue(options.queueSize);
    this.#agent = new (lib().Agent)({
      connect: { ...(options.tls ?? {}), timeout: options.timeoutMs },
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
      keepAliveTimeout: 30_000,
    });
  }

  write(record: AuditRecord): void {
    if (this.#closed) {
      this.#queue.refuse('shutdown');
      return;
    }
    if (this.#queue.offerEncoded(() => this.#encode(record), this.#options.maxBatchBytes)) this.#schedule();
  }

  async flush(timeoutMs: number): Promise<void> {
    this.#flushing += 1;
    try {
      this.#schedule();
      await this.#queue.whenEmpty(timeoutMs);
    } finally {
      this.#flushing -= 1;
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#stop.abort();
    this.#queue.dropPending('shutdown');
    await this.#sending;
    this.#queue.dropPending('shutdown');
    await this.#agent.close().catch(() => {});
  }

  stats(): Readonly<SinkStats> {
    return this.#queue.stats();
  }

  #schedule(): void {
    if (this.#sending || this.#closed || this.#queue.pendingCount === 0) return;
    if (this.#due || this.#flushing > 0 || this.#queue.pendingCount >= this.#options.batchSize) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#due = false;
      this.#sending = this.#sendAll().finally(() => {
        this.#sending = undefined;
        this.#schedule();
      });
    } else {
      this.#timer ??= setTimeout(() => {
        this.#timer = undefined;
        this.#due = true;
        this.#schedule();
      }, this.#options.flushIntervalMs);
    }
  }

  /** Sends full batches back to back (and the partial last one when due or flushing). */
  async #sendAll(): Promise<void> {
    let partialAllowed = true;
    while (!this.#closed && this.#queue.pendingCount > 0) {
      if (!partialAllowed && this.#flushing === 0 && this.#queue.pendingCount < this.#options.batchSize) return;
      const batch = this.#queue.take(this.#options.batchSize, this.#options.maxBatchBytes);
      partialAllowed = false;
      const outcome = await this.#post(batch);
      // close() aborts the request in flight: unless it made it, the batch is given up.
      if (this.#closed && outcome.kind !== 'ok') {
        this.#queue.drop(batch, 'shutdown');
        return;
      }
      this.#settle(batch, outcome);
      if (outcome.kind === 'retry') {
        await sleep(
          backoffDelay(this.#failures, this.#options.minBackoffMs, this.#options.maxBackoffMs),
          this.#stop.signal,
        );
        partialAllowed = true;
      }
    }
  }

  #settle(batch: QueueEntry[], outcome: Outcome): void {
    if (outcome.kind === 'ok') {
      if (!this.#queue.up)
        this.#options.log(`audit sink ${this.name}: delivering again after ${this.#failures} failed attempts`);
      this.#failures = 0;
      this.#rejectLogged = false;
      this.#queue.delivered(batch);
      return;
    }
    if (outcome.kind === 'reject') {
      // Permanent: sending the same bytes again cannot succeed. Log the first of a run, count all.
      if (!this.#rejectLogged)
        this.#options.log(
          `audit sink ${this.name}: EGW_AUDIT_RECEIVER_REJECTED HTTP ${outcome.status}: ${outcome.reason}; ${batch.length} records dropped`,
        );
      this.#rejectLogged = true;
      this.#queue.noteError(`HTTP ${outcome.status}: ${outcome.reason}`);
      this.#queue.drop(batch, 'rejected');
      return;
    }
    this.#failures += 1;
    if (this.#queue.up)
      this.#options.log(
        `audit sink ${this.name}: EGW_AUDIT_SINK_UNAVAILABLE ${outcome.reason}; records stay queued and are retried`,
      );
    this.#queue.markDown(outcome.reason);
    const attempts = batch[0]?.attempts ?? 1;
    if (this.#options.maxRetries !== undefined && attempts > this.#options.maxRetries)
      this.#queue.drop(batch, 'retries_exhausted');
    else this.#queue.retry(batch);
  }

  async #post(batch: readonly QueueEntry[], refreshedToken = false): Promise<Outcome> {
    const body = batch.length === 1 ? (batch[0]?.data as Buffer) : Buffer.concat(batch.map((e) => e.data));
    try {
      const response = await lib().request(this.#options.url, {
        method: 'POST',
        dispatcher: this.#agent,
        headers: {
          authorization: `Splunk ${this.#options.token(refreshedToken)}`,
          'content-type': 'application/json',
          'x-splunk-request-channel': this.#channel,
          'user-agent': `${OBSERVER.product}/${OBSERVER.version}`,
        },
        body,
        signal: AbortSignal.any([AbortSignal.timeout(this.#options.timeoutMs), this.#stop.signal]),
      });
      const text = (await response.body.text()).slice(0, 300);
      if (response.statusCode >= 200 && response.statusCode < 300) return { kind: 'ok' };
      if (isRetryableStatus(response.statusCode))
        return { kind: 'retry', reason: `HTTP ${response.statusCode}: ${text}` };
      // A rotated token file: read it again once before giving the batch up.
      if ((response.statusCode === 401 || response.statusCode === 403) && !refreshedToken) {
        const before = this.#options.token(false);
        if (this.#options.token(true) !== before) return this.#post(batch, true);
      }
      return { kind: 'reject', status: response.statusCode, reason: text };
    } catch (error) {
      const cause = (error as { cause?: { message?: string } }).cause?.message;
      return { kind: 'retry', reason: `${(error as Error).message}${cause ? ` (${cause})` : ''}` };
    }
  }
}
