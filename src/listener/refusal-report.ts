import { randomUUID } from 'node:crypto';
import { type PreHandshakeRefusal, publishAudit } from '../core/audit-event.ts';

/** Beyond this many sources in one interval the report is published early, so memory stays bounded. */
const MAX_SOURCES = 4_096;

interface SourceCounts {
  readonly since: Date;
  total: number;
  readonly byReason: Partial<Record<PreHandshakeRefusal, number>>;
}

/**
 * Audits pre-handshake refusals in aggregate: one `handshake-refused-aggregate` record per source
 * IP and interval, never one per socket. An attacker opening thousands of sockets must not be able
 * to turn each of them into an audit record (that would move the flood to the SIEM).
 */
export class RefusalReport {
  readonly #listener: string;
  readonly #mode: 'connect' | 'tcp';
  readonly #intervalMs: () => number;
  readonly #bySource = new Map<string, SourceCounts>();
  #timer: NodeJS.Timeout | undefined;

  constructor(listener: string, mode: 'connect' | 'tcp', intervalMs: () => number) {
    this.#listener = listener;
    this.#mode = mode;
    this.#intervalMs = intervalMs;
  }

  count(sourceIp: string, reason: PreHandshakeRefusal): void {
    let entry = this.#bySource.get(sourceIp);
    if (!entry) {
      if (this.#bySource.size >= MAX_SOURCES) this.flush();
      entry = { since: new Date(), total: 0, byReason: {} };
      this.#bySource.set(sourceIp, entry);
    }
    entry.total += 1;
    entry.byReason[reason] = (entry.byReason[reason] ?? 0) + 1;
    // The timer runs only while there is something to report; an idle listener holds none.
    if (!this.#timer) {
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.flush();
      }, this.#intervalMs());
      this.#timer.unref();
    }
  }

  /** Publishes one record per source counted since the last flush (also called at drain). */
  flush(): void {
    const end = new Date().toISOString();
    for (const [ip, entry] of this.#bySource) {
      const seconds = Math.max(1, Math.round((Date.now() - entry.since.getTime()) / 1000));
      const reasons = Object.entries(entry.byReason)
        .map(([reason, n]) => `${reason}=${n}`)
        .join(' ');
      publishAudit({
        connectionId: randomUUID(),
        action: 'handshake-refused-aggregate',
        reason: `${entry.total} sockets from ${ip} refused or closed before the TLS handshake in ${seconds} s: ${reasons}`,
        code: 'EGW_PREHANDSHAKE_REFUSED',
        listener: this.#listener,
        mode: this.#mode,
        // Many ports: the record is about the address.
        source: { ip, port: 0 },
        start: entry.since.toISOString(),
        end,
        refusals: { total: entry.total, byReason: { ...entry.byReason } },
      });
    }
    this.#bySource.clear();
  }

  close(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.flush();
  }
}
