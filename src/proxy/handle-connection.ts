import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { type AuditBase, auditIdentityRejected } from '../core/audit-records.ts';
import { GatewayError } from '../core/errors.ts';
import { type PeerIdentity, verifyPeerSvid } from '../identity/verify-svid.ts';
import { recordHandshakeFailure } from '../listener/pre-handshake-gate.ts';
import { proxiedConnection } from '../listener/proxy-protocol-reader.ts';
import { whenClosed } from '../pipe/pipe-sockets.ts';
import { acceptTls, opensslVerifyError, presentedChain, rememberVerifiedChain } from '../tls/accept-tls.ts';
import {
  auditBaseFor,
  type ConnectionContext,
  newConnectionId,
  type ProxyRuntime,
  sourceOf,
} from './connection-context.ts';
import { guardConnection } from './error-boundary.ts';
import type { GatewayState, ListenerSettings } from './gateway-state.ts';
import { resetConnection } from './reset-connection.ts';

/** A mode's entry point; a returned promise is watched by the connection's error boundary. */
export type ModeHandler = (ctx: ConnectionContext) => unknown;

/** What is known of a connection before its identity: enough to audit and reset it. */
interface Accepted {
  readonly id: string;
  readonly listener: ListenerSettings;
  readonly state: GatewayState;
  readonly raw: Socket;
  readonly source: { readonly ip: string; readonly port: number };
  readonly startedAt: Date;
  readonly startedNs: bigint;
}

/** The client's SVID, checked by our verifier and by OpenSSL; a GatewayError when either refuses. */
function verifiedPeer(tls: TLSSocket, state: GatewayState, receivedBytes: number): PeerIdentity {
  try {
    const chain = presentedChain(tls, undefined, receivedBytes);
    const peer = verifyPeerSvid(chain, state.trustBundle);
    const opensslError = opensslVerifyError(tls);
    if (opensslError)
      throw new GatewayError('EGW_IDENTITY_CHAIN_UNTRUSTED', `OpenSSL rejected the chain: ${opensslError}`);
    // Only a chain that passed both verdicts is kept for session resumption (tls/resumed-chains.ts).
    rememberVerifiedChain(tls, chain);
    return peer;
  } catch (error) {
    throw error instanceof GatewayError ? error : new GatewayError('EGW_IDENTITY_MALFORMED', String(error));
  }
}

/** TLS is up: identity, the per-identity limit, then the mode handler behind the error boundary. */
function identified(accepted: Accepted, tls: TLSSocket, handler: ModeHandler, runtime: ProxyRuntime): void {
  const { id, listener, state, raw, source } = accepted;
  let peer: PeerIdentity;
  try {
    // Everything the client sent so far bounds its certificates' sizes (see presentedChain).
    peer = verifiedPeer(tls, state, raw.bytesRead);
  } catch (error) {
    const refusal = error as GatewayError;
    auditIdentityRejected(auditBaseFor(id, listener, source, tls, undefined), refusal.code, refusal.message);
    recordHandshakeFailure(raw);
    resetConnection(raw);
    return;
  }
  tls.on('error', () => {}); // the mode handler reports its own failures
  // Taken once per connection; the mode handler answers a refusal in its own protocol.
  // Released when either socket is gone: the TLS socket can close without the raw one.
  const limit = runtime.limiter.acquire(peer.spiffeId.uri, state.identityLimits);
  if (limit.ok) {
    whenClosed(raw, limit.release);
    whenClosed(tls, limit.release);
  }
  const auditBase = auditBaseFor(id, listener, source, tls, peer);
  const ctx: ConnectionContext = { ...accepted, tls, peer, runtime, limit, auditBase };
  guardConnection(ctx, () => {
    runtime.faultProbe?.('identified', ctx);
    return handler(ctx);
  });
}

function handshakeFailed(accepted: Accepted, base: AuditBase, error: GatewayError): void {
  // A TCP connect without a single byte (port scan, TCP health check; behind a balancer, one
  // that sent only its PROXY header, e.g. a LOCAL health check) is not a decision.
  const silent = error.code === 'EGW_TLS_HANDSHAKE' || error.code === 'EGW_TLS_HANDSHAKE_TIMEOUT';
  if (accepted.raw.bytesRead <= (proxiedConnection(accepted.raw)?.headerBytes ?? 0) && silent) return;
  auditIdentityRejected(base, error.code, error.message);
  recordHandshakeFailure(accepted.raw);
  resetConnection(accepted.raw);
}

/**
 * listener → TLS handshake → identity: the stages every connection goes through before its
 * listener's mode handler sees it. Any failure is audited as `identity-rejected` and reset;
 * whatever escapes these stages is the error boundary's (`EGW_INTERNAL`, this connection only).
 */
export function createConnectionPipeline(
  getState: () => GatewayState,
  listenerName: string,
  handler: ModeHandler,
  runtime: ProxyRuntime,
): (raw: Socket) => void {
  return (raw) => {
    const state = getState();
    const listener = state.listeners.get(listenerName);
    if (!listener) return resetConnection(raw);
    const source = sourceOf(raw);
    const accepted: Accepted = {
      id: newConnectionId(),
      listener,
      state,
      raw,
      source,
      startedAt: new Date(),
      startedNs: process.hrtime.bigint(),
    };
    // The error boundary of the stages above: whatever escapes them closes this connection only.
    const guarded = { raw, auditBase: auditBaseFor(accepted.id, listener, source, undefined, undefined) };
    guardConnection(guarded, () =>
      acceptTls(raw, state.tlsContext, state.timeouts.handshakeMs).then(
        (tls) => identified(accepted, tls, handler, runtime),
        (error: GatewayError) => handshakeFailed(accepted, guarded.auditBase, error),
      ),
    );
  };
}
