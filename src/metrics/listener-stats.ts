import { type AuditRecord, subscribeAudit } from '../core/audit-event.ts';

/** Per-listener counters in the spirit of BIG-IP `tmctl virtual_server_stat`. */
export interface ListenerCounters {
  accepted: number;
  rejected: number;
  rejectedByReason: Record<string, number>;
  identityRejected: number;
  closed: number;
  bytesIn: number;
  bytesOut: number;
}

/** Counts from the audit channel, so the numbers always agree with the audit trail. */
export class ListenerStats {
  readonly #byListener = new Map<string, ListenerCounters>();
  readonly #unsubscribe: () => void;

  constructor() {
    this.#unsubscribe = subscribeAudit((record) => this.#count(record));
  }

  #entry(listener: string): ListenerCounters {
    let entry = this.#byListener.get(listener);
    if (!entry) {
      entry = {
        accepted: 0,
        rejected: 0,
        rejectedByReason: {},
        identityRejected: 0,
        closed: 0,
        bytesIn: 0,
        bytesOut: 0,
      };
      this.#byListener.set(listener, entry);
    }
    return entry;
  }

  #count(record: AuditRecord): void {
    // Pre-handshake refusals are counted by egw_prehandshake_rejections_total, not as connections.
    if (record.action === 'handshake-refused-aggregate') return;
    const entry = this.#entry(record.listener);
    if (record.action === 'egress-permitted' || record.action === 'egress-would-deny') entry.accepted += 1;
    else if (record.action === 'egress-closed') {
      entry.closed += 1;
      entry.bytesIn += record.bytesFromClient ?? 0;
      entry.bytesOut += record.bytesToClient ?? 0;
    } else {
      if (record.action === 'identity-rejected') entry.identityRejected += 1;
      else entry.rejected += 1;
      const code = record.code ?? 'unknown';
      entry.rejectedByReason[code] = (entry.rejectedByReason[code] ?? 0) + 1;
    }
  }

  snapshot(listeners: readonly string[]): Record<string, ListenerCounters> {
    return Object.fromEntries(listeners.map((name) => [name, structuredClone(this.#entry(name))]));
  }

  close(): void {
    this.#unsubscribe();
  }
}
