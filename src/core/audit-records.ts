import { type AuditRecord, publishAudit } from './audit-event.ts';
import type { ErrorCode } from './errors.ts';

/** The fields every record of one client connection carries (built once per connection). */
export type AuditBase = Pick<
  AuditRecord,
  'connectionId' | 'listener' | 'mode' | 'source' | 'identity' | 'certificate' | 'tls'
>;

type Destination = NonNullable<AuditRecord['destination']>;
type Http = NonNullable<AuditRecord['http']>;
type Snat = NonNullable<AuditRecord['snat']>;

/** What a decision was about; shared by the permit, refusal and close records of one tunnel. */
export interface EgressFacts {
  readonly destination?: Destination;
  readonly rule?: string;
  readonly snat?: Snat;
  readonly http?: Http;
  readonly parent?: NonNullable<AuditRecord['parent']>;
}

/** The source address and port the upstream connection actually used, else the one chosen. */
export function snatOf(chosen: string | undefined, local: { localAddress?: string; localPort?: number }): Snat {
  return { ip: local.localAddress ?? chosen ?? '', ...(local.localPort ? { port: local.localPort } : {}) };
}

function factFields(facts: EgressFacts, statusCode?: number) {
  return {
    ...(facts.destination ? { destination: facts.destination } : {}),
    ...(facts.rule !== undefined ? { rule: { name: facts.rule } } : {}),
    ...(facts.snat ? { snat: facts.snat } : {}),
    ...(facts.parent ? { parent: facts.parent } : {}),
    ...(facts.http ? { http: { ...facts.http, ...(statusCode === undefined ? {} : { statusCode }) } } : {}),
  };
}

export function auditIdentityRejected(base: AuditBase, code: ErrorCode, reason: string): void {
  publishAudit({ ...base, action: 'identity-rejected', reason, code });
}

/** A refusal after the identity was established: policy, limits, malformed requests, dial failures. */
export function auditEgressRejected(
  base: AuditBase,
  refusal: { readonly code: ErrorCode; readonly reason: string; readonly status?: number },
  facts: EgressFacts = {},
): void {
  publishAudit({
    ...base,
    action: 'egress-rejected',
    reason: refusal.reason,
    code: refusal.code,
    ...factFields(facts, refusal.status),
  });
}

export function auditEgressPermitted(base: AuditBase, reason: string, facts: EgressFacts, statusCode?: number): void {
  publishAudit({ ...base, action: 'egress-permitted', reason, ...factFields(facts, statusCode) });
}

/** Report mode: let through although policy would refuse it; `reason` and `rule` say what would have refused it. */
export function auditEgressWouldDeny(base: AuditBase, reason: string, facts: EgressFacts, statusCode?: number): void {
  publishAudit({ ...base, action: 'egress-would-deny', reason, ...factFields(facts, statusCode) });
}

export interface CloseFacts {
  readonly reason: string;
  /**
   * Set when the gateway ended the tunnel on purpose (reload, identity expiry: the refusal's code)
   * or on a gateway fault (`EGW_INTERNAL`), not on a side closing.
   */
  readonly code?: ErrorCode;
  readonly startedAt: Date;
  /** process.hrtime.bigint() at the start, for a monotonic duration. */
  readonly startedNs: bigint;
  readonly bytesFromClient: number;
  readonly bytesToClient: number;
  readonly statusCode?: number;
}

export function auditEgressClosed(base: AuditBase, facts: EgressFacts, close: CloseFacts): void {
  publishAudit({
    ...base,
    action: 'egress-closed',
    reason: close.reason,
    ...(close.code ? { code: close.code } : {}),
    ...factFields(facts, close.statusCode),
    start: close.startedAt.toISOString(),
    end: new Date().toISOString(),
    durationNs: Number(process.hrtime.bigint() - close.startedNs),
    bytesFromClient: close.bytesFromClient,
    bytesToClient: close.bytesToClient,
  });
}
