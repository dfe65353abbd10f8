import { isIP, type Socket } from 'node:net';
import type { PreHandshakeRefusal } from '../core/audit-event.ts';
import { canonicalIp, embeddedIpv4 } from '../core/ip-set.ts';
import { publishRuntimeEvent } from '../core/runtime-event.ts';
import { RefusalReport } from './refusal-report.ts';
import type { SourcePenalty } from './source-penalty.ts';

export interface PreHandshakeLimits {
  /** Sockets of this listener still before the end of their TLS handshake (0 = unlimited). */
  readonly maxSockets: number;
  /** Of those, per source IP (0 = unlimited). */
  readonly maxPerSource: number;
  /** A socket that has sent no byte by then is closed. */
  readonly firstByteMs: number;
  /** One aggregate audit record per source per this interval. */
  readonly auditIntervalMs: number;
}

/** A TCP RST frees the socket at once (no FIN_WAIT on our side); falls back to a plain destroy. */
export function resetSocket(socket: Socket): void {
  if (socket.destroyed) return;
  try {
    socket.resetAndDestroy();
  } catch {
    socket.destroy();
  }
}

/**
 * What the per-source cap counts by: an IPv4 address (also when written as ::ffff:a.b.c.d), or an
 * IPv6 /64, since one host is usually handed a whole /64 and could otherwise rotate addresses.
 */
export function sourceKey(ip: string): string {
  const v4 = embeddedIpv4(ip);
  if (v4) return v4;
  const canonical = isIP(ip) === 6 ? canonicalIp(ip) : undefined;
  if (!canonical) return ip;
  const [head = '', tail] = canonical.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = tail === undefined || tail === '' ? [] : tail.split(':');
  const zeros = Array(8 - headGroups.length - tailGroups.length).fill('0');
  const groups = tail === undefined ? headGroups : [...headGroups, ...zeros, ...tailGroups];
  return `${groups.slice(0, 4).join(':')}::/64`;
}

/** One admitted socket: the per-source key it counts under (none yet behind a balancer), its deadline. */
interface GateEntry {
  key: string | undefined;
  timer: NodeJS.Timeout | undefined;
}

/** Sockets admitted by some gate and not yet through their handshake → the gate's release. */
const pending = new WeakMap<Socket, () => void>();

/** Admitted sockets → where a failure of theirs counts: kept past the handshake, for identity refusals. */
const penaltyOf = new WeakMap<Socket, { penalty: SourcePenalty; key: string }>();

/**
 * Called by the stages after the listener when the handshake or the identity on `raw` failed: the
 * failure counts towards its source's penalty (by the PROXY source behind a balancer). A no-op
 * for sockets no gate with a penalty admitted.
 */
export function recordHandshakeFailure(raw: Socket): void {
  const owner = penaltyOf.get(raw);
  if (!owner) return;
  penaltyOf.delete(raw); // once per socket, however many stages report it
  owner.penalty.fail(owner.key);
}

/**
 * Called by the TLS stage once the handshake on `raw` is complete: the socket leaves the
 * pre-handshake budget and counts as established. A no-op for sockets no gate admitted.
 */
export function markHandshakeDone(raw: Socket): void {
  const release = pending.get(raw);
  if (release) release();
}

/**
 * Bounds what unauthenticated sockets can hold before trust exists: a budget per listener, a cap
 * per source IP and a first-byte deadline. Sockets that never send a TLS byte would otherwise sit
 * in `maxConnections` until the handshake timeout and lock legitimate clients out.
 */
export class PreHandshakeGate {
  readonly #listener: string;
  readonly #limits: () => PreHandshakeLimits;
  readonly #report: RefusalReport;
  readonly #bySource = new Map<string, number>();
  readonly #entries = new WeakMap<Socket, GateEntry>();
  readonly #penalty: SourcePenalty | undefined;
  #size = 0;

  constructor(listener: string, mode: 'connect' | 'tcp', limits: () => PreHandshakeLimits, penalty?: SourcePenalty) {
    this.#listener = listener;
    this.#limits = limits;
    this.#penalty = penalty;
    this.#report = new RefusalReport(listener, mode, () => limits().auditIntervalMs);
  }

  /** Sockets currently before the end of their handshake. */
  get size(): number {
    return this.#size;
  }

  /**
   * Admits `socket` or says why not; a refused socket is left to the caller to reset. With
   * `deferSource` (a PROXY protocol listener) the peer is a load balancer: the per-source cap waits
   * for `attribute` with the client address the header carries.
   */
  admit(socket: Socket, deferSource = false): PreHandshakeRefusal | undefined {
    const limits = this.#limits();
    const ip = socket.remoteAddress ?? '';
    const refusal = deferSource
      ? this.#listenerFull(limits)
      : (this.#sourceRefusal(ip, limits) ?? this.#listenerFull(limits));
    if (refusal) {
      this.#refused(ip, refusal);
      return refusal;
    }
    const entry: GateEntry = { key: deferSource ? undefined : this.#countSource(socket, ip), timer: undefined };
    this.#size += 1;
    publishRuntimeEvent({ type: 'prehandshake-sockets', listener: this.#listener, delta: 1 });
    entry.timer = this.#firstByteTimer(socket, ip, 0, limits.firstByteMs);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      clearTimeout(entry.timer);
      pending.delete(socket);
      this.#entries.delete(socket);
      socket.removeListener('close', release);
      this.#release(entry.key);
    };
    pending.set(socket, release);
    this.#entries.set(socket, entry);
    socket.once('close', release);
    return undefined;
  }

  /**
   * Counts a socket admitted with `deferSource` against the cap of `ip`, its PROXY source, and
   * restarts the first-byte deadline after the `headerBytes` already read: the header alone must
   * not let a silent client hold the socket until the handshake timeout.
   */
  attribute(socket: Socket, ip: string, headerBytes: number): PreHandshakeRefusal | undefined {
    const entry = this.#entries.get(socket);
    if (!entry || entry.key !== undefined) return undefined;
    const limits = this.#limits();
    const refusal = this.#sourceRefusal(ip, limits);
    if (refusal) {
      this.#refused(ip, refusal);
      return refusal;
    }
    entry.key = this.#countSource(socket, ip);
    clearTimeout(entry.timer);
    entry.timer = this.#firstByteTimer(socket, ip, headerBytes, limits.firstByteMs);
    return undefined;
  }

  /** Counts a refusal decided outside the gate (a missing PROXY header, an untrusted balancer). */
  refuse(ip: string, reason: PreHandshakeRefusal): void {
    this.#refused(ip, reason);
  }

  /** A penalised source first: it is refused even when it holds no socket at all. */
  #sourceRefusal(ip: string, limits: PreHandshakeLimits): PreHandshakeRefusal | undefined {
    const key = sourceKey(ip);
    if (this.#penalty?.penalised(key)) return 'source_penalty';
    if (limits.maxPerSource > 0 && (this.#bySource.get(key) ?? 0) >= limits.maxPerSource) return 'source_limit';
    return undefined;
  }

  #listenerFull(limits: PreHandshakeLimits): PreHandshakeRefusal | undefined {
    return limits.maxSockets > 0 && this.#size >= limits.maxSockets ? 'listener_limit' : undefined;
  }

  #countSource(socket: Socket, ip: string): string {
    const key = sourceKey(ip);
    this.#bySource.set(key, (this.#bySource.get(key) ?? 0) + 1);
    if (this.#penalty) penaltyOf.set(socket, { penalty: this.#penalty, key });
    return key;
  }

  #firstByteTimer(socket: Socket, ip: string, baseline: number, ms: number): NodeJS.Timeout {
    // bytesRead counts at the TCP handle, so it sees the bytes the TLS layer reads too.
    return setTimeout(() => {
      if (socket.bytesRead > baseline || socket.destroyed) return;
      this.#refused(ip, 'first_byte_timeout');
      resetSocket(socket);
    }, ms);
  }

  #release(key: string | undefined): void {
    if (key !== undefined) {
      const left = (this.#bySource.get(key) ?? 1) - 1;
      if (left > 0) this.#bySource.set(key, left);
      else this.#bySource.delete(key);
    }
    this.#size -= 1;
    publishRuntimeEvent({ type: 'prehandshake-sockets', listener: this.#listener, delta: -1 });
  }

  #refused(ip: string, reason: PreHandshakeRefusal): void {
    publishRuntimeEvent({ type: 'prehandshake-refused', listener: this.#listener, reason });
    this.#report.count(ip, reason);
  }

  /** Publishes what the report holds (at drain, before the audit hub flushes). */
  close(): void {
    this.#report.close();
  }
}
