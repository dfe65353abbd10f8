import type { ErrorCode } from '../core/errors.ts';

export interface IdentityLimits {
  /** Open connections one SPIFFE ID may hold (0 = unlimited). */
  readonly maxConnectionsPerIdentity: number;
  /** New connections per second per SPIFFE ID (0 = unlimited), token bucket with `burst`. */
  readonly newConnectionsPerSecond: number;
  readonly burst: number;
}

export type LimitVerdict =
  | { readonly ok: true; readonly release: () => void }
  | { readonly ok: false; readonly code: ErrorCode; readonly reason: string; readonly retryAfterSeconds: number };

interface Bucket {
  tokens: number;
  updatedMs: number;
}

const MAX_TRACKED_IDENTITIES = 100_000;

/**
 * Per-identity concurrency and new-connection rate. One instance lives for the process, so counts
 * survive a reload; the limits themselves come from the current state on each call.
 */
export class IdentityLimiter {
  readonly #open = new Map<string, number>();
  readonly #buckets = new Map<string, Bucket>();

  acquire(identity: string, limits: IdentityLimits, nowMs = Date.now()): LimitVerdict {
    if (limits.newConnectionsPerSecond > 0) {
      const capacity = Math.max(1, limits.burst);
      let bucket = this.#buckets.get(identity);
      if (!bucket) {
        if (this.#buckets.size >= MAX_TRACKED_IDENTITIES) this.#buckets.clear();
        bucket = { tokens: capacity, updatedMs: nowMs };
        this.#buckets.set(identity, bucket);
      }
      bucket.tokens = Math.min(
        capacity,
        bucket.tokens + ((nowMs - bucket.updatedMs) / 1000) * limits.newConnectionsPerSecond,
      );
      bucket.updatedMs = nowMs;
      if (bucket.tokens < 1) {
        const retryAfterSeconds = Math.max(1, Math.ceil((1 - bucket.tokens) / limits.newConnectionsPerSecond));
        return {
          ok: false,
          code: 'EGW_LIMIT_IDENTITY_RATE',
          reason: `${identity} exceeded ${limits.newConnectionsPerSecond} new connections per second`,
          retryAfterSeconds,
        };
      }
      bucket.tokens -= 1;
    }
    const open = this.#open.get(identity) ?? 0;
    if (limits.maxConnectionsPerIdentity > 0 && open >= limits.maxConnectionsPerIdentity) {
      return {
        ok: false,
        code: 'EGW_LIMIT_IDENTITY_CONNECTIONS',
        reason: `${identity} already holds ${open} connections (limit ${limits.maxConnectionsPerIdentity})`,
        retryAfterSeconds: 1,
      };
    }
    this.#open.set(identity, open + 1);
    let released = false;
    return {
      ok: true,
      release: () => {
        if (released) return;
        released = true;
        const left = (this.#open.get(identity) ?? 1) - 1;
        if (left <= 0) this.#open.delete(identity);
        else this.#open.set(identity, left);
      },
    };
  }

  /** Open connections of all identities together (a leak shows here first). */
  totalOpen(): number {
    let total = 0;
    for (const count of this.#open.values()) total += count;
    return total;
  }
}
