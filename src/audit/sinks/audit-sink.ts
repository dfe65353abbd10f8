import type { AuditRecord } from '../../core/audit-event.ts';

/** Why a record was given up on. Every drop has exactly one reason. */
export type DropReason =
  | 'queue_full'
  | 'rejected'
  | 'too_large'
  | 'format_error'
  | 'write_error'
  | 'retries_exhausted'
  | 'shutdown';

/**
 * Delivery accounting every sink keeps, so an outage never loses a record silently.
 * Invariant, at any moment: `received = delivered + dropped + queued`.
 * `retried` counts records put back in the queue after a failed or unconfirmed attempt; one
 * record can add several times, so it can exceed `received`.
 */
export interface SinkStats {
  received: number;
  delivered: number;
  retried: number;
  dropped: number;
  /** Waiting or in flight (sent but not yet confirmed). */
  queued: number;
  droppedBy: Partial<Record<DropReason, number>>;
  /** Whether the last attempt to reach the receiver worked (stdout/file: the last write). */
  up: boolean;
  lastError?: string;
  lastErrorAt?: string;
}

export interface AuditSink {
  readonly name: string;
  /**
   * Formats and queues one record. Must not block or throw: queue it, or count a drop.
   * Connecting is lazy (first record), so an unreachable receiver never fails start-up.
   */
  write(record: AuditRecord): void;
  /** Resolves when everything queued is delivered, or the timeout passes. */
  flush(timeoutMs: number): Promise<void>;
  /** Stops; whatever is still queued is counted as dropped (`shutdown`). Call flush first. */
  close(): Promise<void>;
  stats(): Readonly<SinkStats>;
  /** logrotate support: reopen files (no-op for other sinks). */
  reopen?(): void;
}

/** Operational log line (stderr by default). */
export type SinkLog = (message: string) => void;
