/** Delivery accounting every sink keeps, so an outage never loses a record silently. */
export interface SinkStats {
  delivered: number;
  retried: number;
  dropped: number;
  queued: number;
}

export interface AuditSink {
  readonly name: string;
  /** Must not block or throw: queue, or count a drop. */
  write(line: string): void;
  /** Resolves when queued records are delivered, or the timeout passes. */
  flush(timeoutMs: number): Promise<void>;
  close(): Promise<void>;
  stats(): Readonly<SinkStats>;
  /** logrotate support: reopen files (no-op for other sinks). */
  reopen?(): void;
}
