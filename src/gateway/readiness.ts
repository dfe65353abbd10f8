import type { Readiness } from '../admin/admin-backend.ts';
import type { CrlStatus } from '../identity/revocation.ts';
import type { WatchedCertificate } from './certificate-list.ts';

export interface ReadinessFacts {
  readonly draining: boolean;
  /** Set while there is no state yet (Workload API: no SVID): what is awaited. */
  readonly waitingFor?: string | undefined;
  /** Every configured listener holds its socket. */
  readonly listenersBound: boolean;
  readonly certificates: readonly WatchedCertificate[];
  /** identity.crls as they stand at `nowMs`: one not 'valid' makes the replica unready. */
  readonly crls: readonly CrlStatus[];
  /** `admin.certExpiryWindow` as running (admin settings apply at restart). */
  readonly expiryWindowMs: number;
  readonly nowMs: number;
}

/**
 * Whether the replica should get traffic. While draining the listeners are closed on purpose, so
 * that is reported as "draining", not as unbound listeners. A certificate expired, or expiring
 * within the window, makes it unready; replicas mounting one Secret go unready together, and a
 * window of 0 fails on expiry only. Before the first state the listeners are unbound on purpose
 * too, and what is awaited is the reason. A configured CRL that is defective, stale or not yet
 * valid is a reason too: under crlRequired its issuer's clients are refused, without it new
 * revocations may be missing.
 */
export function readinessOf(facts: ReadinessFacts): Readiness {
  const reasons: string[] = [];
  if (facts.draining) reasons.push('draining');
  else if (facts.waitingFor !== undefined) reasons.push(facts.waitingFor);
  else if (!facts.listenersBound) reasons.push('not every listener is bound');
  const horizon = facts.nowMs + facts.expiryWindowMs;
  for (const { label, notAfter } of facts.certificates) {
    const at = notAfter.getTime();
    if (at < facts.nowMs) reasons.push(`${label} expired at ${notAfter.toISOString()}`);
    else if (at < horizon) reasons.push(`${label} expires at ${notAfter.toISOString()}, within admin.certExpiryWindow`);
  }
  for (const crl of facts.crls)
    if (crl.status !== 'valid') reasons.push(`CRL ${crl.source} of "${crl.issuer}" is ${crl.status}: ${crl.reason}`);
  return { ready: reasons.length === 0, reasons };
}
