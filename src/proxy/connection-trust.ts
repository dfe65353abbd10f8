import { createHash } from 'node:crypto';
import { auditIdentityRejected } from '../core/audit-records.ts';
import { type ErrorCode, GatewayError, isGatewayError } from '../core/errors.ts';
import { type PeerIdentity, verifyPeerSvid } from '../identity/verify-svid.ts';
import { presentedChain } from '../tls/accept-tls.ts';
import type { ConnectionContext } from './connection-context.ts';
import type { GatewayState } from './gateway-state.ts';

/** Verdicts of one re-verification pass, by chain: many connections share one SVID. */
export type TrustMemo = Map<string, GatewayError | undefined>;

/**
 * Whether an identity established earlier is still trusted under `state` at `now`: the same chain
 * verification the handshake ran (src/identity), against the current trust bundle, with the DER
 * chain the peer sent. Returns the reason it is not, else undefined. Kept small and pure so that
 * further checks (revocation) join it here.
 */
export function untrustedBecause(
  peer: PeerIdentity,
  chain: readonly Buffer[],
  state: GatewayState,
  now: Date,
): GatewayError | undefined {
  try {
    const again = verifyPeerSvid(chain, state.trustBundle, now);
    if (again.spiffeId.uri === peer.spiffeId.uri) return undefined;
    return new GatewayError('EGW_IDENTITY_CHAIN_UNTRUSTED', `the chain now proves ${again.spiffeId.uri}`);
  } catch (error) {
    return isGatewayError(error) ? error : new GatewayError('EGW_IDENTITY_MALFORMED', String(error));
  }
}

/** The earliest notAfter on the validated path: the moment the identity stops being valid. */
function pathExpiry(peer: PeerIdentity): number {
  return Math.min(...peer.path.map((cert) => cert.notAfter.getTime()));
}

/** Why a connection was ended by the gateway (reload, expiry), for its close records. */
export interface ClosedBecause {
  readonly reason: string;
  readonly code: ErrorCode;
}

/**
 * The trust of one authenticated connection over its life. The handshake verified it under
 * `ctx.state`; a later state (a reload) is verified again once, and time is checked on every call.
 */
export class ConnectionTrust {
  readonly peer: PeerIdentity;
  readonly expiresAtMs: number;
  /** Set once the gateway ends the connection on purpose; read by the close records. */
  closedBecause: ClosedBecause | undefined;
  readonly #tls: ConnectionContext['tls'];
  readonly #raw: ConnectionContext['raw'];
  readonly #auditBase: ConnectionContext['auditBase'];
  #verified: GatewayState;
  #chain: Buffer[] | undefined;

  constructor(ctx: ConnectionContext) {
    this.peer = ctx.peer;
    this.expiresAtMs = pathExpiry(ctx.peer);
    this.#tls = ctx.tls;
    this.#raw = ctx.raw;
    this.#auditBase = ctx.auditBase;
    this.#verified = ctx.state;
  }

  /** The expiry alone (no signature work): for the timer and every request. */
  expired(now: Date = new Date()): GatewayError | undefined {
    if (now.getTime() <= this.expiresAtMs) return undefined;
    return new GatewayError(
      'EGW_IDENTITY_EXPIRED',
      `the client certificate chain expired at ${new Date(this.expiresAtMs).toISOString()}`,
    );
  }

  /** Ends a connection that carries no tunnel: audited as `identity-rejected` with the refusal. */
  endAudited(because: ClosedBecause): void {
    if (this.closedBecause) return;
    auditIdentityRejected(this.#auditBase, because.code, because.reason);
    this.end(because);
  }

  /** Ends the connection (and with it a tunnel on it); its close records carry `because`. */
  end(because: ClosedBecause): void {
    this.closedBecause ??= because;
    this.#tls.destroy();
    this.#raw.destroy();
  }

  /** Undefined while the identity is trusted under `state`; else why not. */
  check(state: GatewayState, now: Date = new Date(), memo?: TrustMemo): GatewayError | undefined {
    const expired = this.expired(now);
    if (expired) return expired;
    if (state === this.#verified) return undefined;
    // Read from the TLS session only when needed (after a reload), not on every handshake.
    this.#chain ??= presentedChain(this.#tls);
    const key = memo ? chainKey(this.#chain) : '';
    const problem = memo?.has(key) === true ? memo.get(key) : untrustedBecause(this.peer, this.#chain, state, now);
    memo?.set(key, problem);
    if (!problem) this.#verified = state;
    return problem;
  }
}

function chainKey(chain: readonly Buffer[]): string {
  const hash = createHash('sha256');
  for (const der of chain) hash.update(der);
  return hash.digest('hex');
}

// Keyed by the TLS socket: per-request copies of the context (with the current state) share it.
const trusts = new WeakMap<ConnectionContext['tls'], ConnectionTrust>();

/**
 * The one ConnectionTrust of a connection, created on first use: the mode handler calls this
 * with the handshake's context before it hands out per-request copies.
 */
export function trustOf(ctx: ConnectionContext): ConnectionTrust {
  let trust = trusts.get(ctx.tls);
  if (!trust) {
    trust = new ConnectionTrust(ctx);
    trusts.set(ctx.tls, trust);
  }
  return trust;
}
