/** Beyond this many sources the least recently failed one is forgotten, so memory stays bounded. */
export const MAX_PENALTY_SOURCES = 16_384;

export interface SourcePenaltyLimits {
  /** Failed handshakes or identity refusals from one source within `windowMs` that start a penalty (0 = off). */
  readonly failures: number;
  readonly windowMs: number;
  /** The first penalty; each further one doubles, up to `maxPenaltyMs`. */
  readonly penaltyMs: number;
  readonly maxPenaltyMs: number;
}

interface SourceRecord {
  windowStart: number;
  failures: number;
  /** Until when the source's new sockets are reset at accept (0: not penalised). */
  until: number;
  /** Penalties so far: the next one lasts penaltyMs * 2^strikes. */
  strikes: number;
}

/**
 * Per-source penalty for failed handshakes: a source that keeps presenting chains the gateway
 * refuses makes it spend ~14 ms of CPU per attempt inside OpenSSL, before any of our checks can
 * run. Past the threshold its sockets are reset at accept, before any TLS work. A successful
 * identity from the same source does not clear it: an attacker may hold one valid certificate.
 * Keys are the per-source keys of the pre-handshake gate (IPv4 address, IPv6 /64).
 */
export class SourcePenalty {
  readonly #limits: () => SourcePenaltyLimits;
  readonly #now: () => number;
  /** Map order is recency of the last failure: the first entry is the one evicted. */
  readonly #sources = new Map<string, SourceRecord>();

  constructor(limits: () => SourcePenaltyLimits, now: () => number = Date.now) {
    this.#limits = limits;
    this.#now = now;
  }

  /** Sources currently remembered (for tests and the bound). */
  get size(): number {
    return this.#sources.size;
  }

  /** True while `key` is penalised: its new socket must be reset at accept. */
  penalised(key: string): boolean {
    const record = this.#sources.get(key);
    return record !== undefined && record.until > this.#now();
  }

  /** Counts one failed handshake or identity refusal of `key`; returns true when a penalty starts. */
  fail(key: string): boolean {
    const limits = this.#limits();
    if (limits.failures <= 0) return false;
    const now = this.#now();
    const record = this.#touch(key, now, limits);
    if (record.until > now) return false; // already penalised (a handshake that was in flight)
    if (now - record.windowStart >= limits.windowMs) {
      record.windowStart = now;
      record.failures = 0;
    }
    record.failures += 1;
    if (record.failures < limits.failures) return false;
    const ms = Math.min(limits.maxPenaltyMs, limits.penaltyMs * 2 ** Math.min(record.strikes, 30));
    record.until = now + ms;
    record.strikes += 1;
    record.failures = 0;
    record.windowStart = record.until;
    return true;
  }

  /** The record of `key`, moved to the most recent end; a long-quiet one starts afresh. */
  #touch(key: string, now: number, limits: SourcePenaltyLimits): SourceRecord {
    let record = this.#sources.get(key);
    if (record) this.#sources.delete(key);
    // Strikes are forgotten after a quiet spell as long as the longest penalty: a source that
    // failed once a day ago is not doubled up now.
    if (record && record.until + limits.maxPenaltyMs < now && now - record.windowStart > limits.maxPenaltyMs) {
      record = undefined;
    }
    record ??= { windowStart: now, failures: 0, until: 0, strikes: 0 };
    this.#sources.set(key, record);
    while (this.#sources.size > MAX_PENALTY_SOURCES) {
      const oldest = this.#sources.keys().next().value as string;
      this.#sources.delete(oldest);
    }
    return record;
  }
}
