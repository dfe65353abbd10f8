import { createHash, X509Certificate } from 'node:crypto';
import { auditIdentityRejected } from '../core/audit-records.ts';
import { type ErrorCode, GatewayError, isGatewayError } from '../core/errors.ts';
import { checkChainSize, DEFAULT_CHAIN_LIMITS } from '../identity/chain-limits.ts';
import { revocationOf } from '../identity/revocation.ts';
import { verifyChain } from '../identity/verify-chain.ts';
import { type PeerIdentity, verifySvidLeaf } from '../identity/verify-svid.ts';
import { type CertificateFacts, certificateFacts } from '../pki/certificate-facts.ts';
import { presentedChain } from '../tls/accept-tls.ts';
import type { ConnectionContext } from './connection-context.ts';
import type { GatewayState } from './gateway-state.ts';

/** Verdicts of one re-verification pass, by chain: many connections share one SVID. */
export type TrustMemo = Map<string, GatewayError | undefined>;

/**
 * Whether an identity established earlier is still trusted under `state` at `now`: the chain
 * verification of src/identity (sizes, path to an anchor of the current bundle with every
 * validity and CA rule, the SVID rules of its trust domain) over the DER chain the peer sent,
 * then revocation of that path under the state's CRLs. Returns the reason it is not, else
 * undefined. Pure: the one re-check for reloads and for kept-alive requests after one.
 * Only a revocation counts here, not crlRequired: a CRL gone missing or stale refuses new
 * handshakes, but cutting what is open would then hinge on when some unrelated reload happens.
 */
export function untrustedBecause(
  peer: PeerIdentity,
  chain: readonly Buffer[],
  state: GatewayState,
  now: Date,
): GatewayError | undefined {
  try {
    const bundle = state.trustBundle;
    checkChainSize(chain, bundle.limits ?? DEFAULT_CHAIN_LIMITS);
    const [leaf, ...rest] = chain.map((der) => factsOf(der, peer)) as [CertificateFacts, ...CertificateFacts[]];
    const path = verifyChain(leaf, rest, bundle, now);
    const id = verifySvidLeaf(leaf, bundle.trustDomain);
    if (id.uri !== peer.spiffeId.uri)
      return new GatewayError('EGW_IDENTITY_CHAIN_UNTRUSTED', `the chain now proves ${id.uri}`);
    return revocationOf(path, bundle.revocation, now);
  } catch (error) {
    return isGatewayError(error) ? error : new GatewayError('EGW_IDENTITY_MALFORMED', String(error));
  }
}

/**
 * The parsed facts of one presented certificate: the handshake's when it is on the validated
 * path (the ASN.1 decode costs milliseconds, the signature checks a fraction of that), else
 * parsed again. The DER decides, so the same certificates are judged.
 */
function factsOf(der: Buffer, peer: PeerIdentity): CertificateFacts {
  return peer.path.find((facts) => facts.node.raw.equals(der)) ?? certificateFacts(new X509Certificate(der));
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
