import type { AuditRecord } from '../../core/audit-event.ts';

/**
 * One severity scale for every format, so a SIEM sees the same ranking in CEF and syslog.
 * A policy refusal is something an analyst may want to look at; an identity refusal (no or
 * forged client certificate) is more suspicious; upstream failures are operational noise.
 */
export interface RecordSeverity {
  /** CEF header severity, 0–10. */
  readonly cef: number;
  /** RFC 5424 severity, 0 (emergency) – 7 (debug). */
  readonly syslog: number;
}

const POLICY_CODES = new Set(['EGW_POLICY_DENIED', 'EGW_POLICY_DESTINATION_PROHIBITED']);

export function recordSeverity(record: AuditRecord): RecordSeverity {
  switch (record.action) {
    case 'identity-rejected':
      return { cef: 7, syslog: 4 }; // warning
    case 'handshake-refused-aggregate':
      return { cef: 5, syslog: 5 }; // notice: many sockets from one source that never authenticated
    case 'egress-would-deny':
      return { cef: 5, syslog: 5 }; // notice: traffic the policy being rolled out would break
    case 'egress-rejected':
      return POLICY_CODES.has(record.code ?? '') ? { cef: 6, syslog: 5 } : { cef: 4, syslog: 5 }; // notice
    default:
      return { cef: 3, syslog: 6 }; // informational
  }
}

/** ECS `event.outcome`: allow/deny is `event.type`; outcome says whether the gateway did what it decided. */
export function recordFailed(record: AuditRecord): boolean {
  return record.code !== undefined && !POLICY_CODES.has(record.code);
}
