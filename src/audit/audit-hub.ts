import { type AuditRecord, subscribeAudit } from '../core/audit-event.ts';
import type { AuditSink, SinkLog, SinkStats } from './sinks/audit-sink.ts';

export interface AuditHubOptions {
  /** Operational log (default: stderr, like the gateway's own log). */
  readonly log?: SinkLog;
  /** How often drops are reported: at most one line per sink per interval. */
  readonly dropLogIntervalMs?: number;
}

/**
 * Subscribes to the data path's audit channel and hands each record to every sink. Sinks
 * format and queue synchronously and send in the background, so publishing never waits for a
 * receiver; a sink that cannot keep up drops and counts. Drops are reported in the log once
 * per interval per sink, and `stats()` exposes every sink's ledger (SIGUSR2 prints it).
 */
export class AuditHub {
  readonly #sinks: AuditSink[] = [];
  readonly #log: SinkLog;
  readonly #dropLogIntervalMs: number;
  readonly #reportedDrops = new Map<string, number>();
  #unsubscribe: (() => void) | undefined;
  #reportTimer: NodeJS.Timeout | undefined;

  constructor(options: AuditHubOptions = {}) {
    this.#log = options.log ?? ((message) => process.stderr.write(`${message}\n`));
    this.#dropLogIntervalMs = options.dropLogIntervalMs ?? 10_000;
  }

  add(sink: AuditSink): void {
    this.#sinks.push(sink);
  }

  start(): void {
    if (this.#unsubscribe) return;
    this.#unsubscribe = subscribeAudit((record) => this.deliver(record));
    this.#reportTimer = setInterval(() => this.reportDrops(), this.#dropLogIntervalMs);
    this.#reportTimer.unref();
  }

  deliver(record: AuditRecord): void {
    for (const sink of this.#sinks) {
      try {
        sink.write(record);
      } catch (error) {
        // Sinks do not throw; if one ever does, the data path must still not see it.
        this.#log(`audit sink ${sink.name}: write threw ${(error as Error).message}`);
      }
    }
  }

  stats(): Record<string, Readonly<SinkStats>> {
    return Object.fromEntries(this.#sinks.map((sink) => [sink.name, sink.stats()]));
  }

  /** Logs one line for each sink that dropped records since the last report. */
  reportDrops(): void {
    for (const sink of this.#sinks) {
      const stats = sink.stats();
      const before = this.#reportedDrops.get(sink.name) ?? 0;
      if (stats.dropped === before) continue;
      this.#reportedDrops.set(sink.name, stats.dropped);
      const reasons = Object.entries(stats.droppedBy)
        .map(([reason, count]) => `${reason} ${count}`)
        .join(', ');
      this.#log(
        `audit sink ${sink.name}: EGW_AUDIT_RECORDS_DROPPED ${stats.dropped - before} records dropped since the last report ` +
          `(totals: received ${stats.received}, delivered ${stats.delivered}, retried ${stats.retried}, dropped ${stats.dropped} [${reasons}], queued ${stats.queued})` +
          `${stats.lastError ? `; last error: ${stats.lastError}` : ''}`,
      );
    }
  }

  reopen(): void {
    for (const sink of this.#sinks) sink.reopen?.();
  }

  /** Sends everything queued now (partial HEC batches, unconfirmed syslog connections); waits up to `timeoutMs`. */
  async flush(timeoutMs: number): Promise<void> {
    await Promise.all(this.#sinks.map((sink) => sink.flush(timeoutMs).catch(() => {})));
  }

  /** Stops taking records, gives every sink up to `timeoutMs` (together) to deliver, then closes them. */
  async close(timeoutMs: number): Promise<void> {
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    clearInterval(this.#reportTimer);
    await this.flush(timeoutMs);
    await Promise.all(this.#sinks.map((sink) => sink.close().catch(() => {})));
    this.reportDrops();
  }
}
