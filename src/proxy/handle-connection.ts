import type { Socket } from 'node:net';
import { publishAudit } from '../core/audit-event.ts';
import { GatewayError } from '../core/errors.ts';
import { verifyPeerSvid } from '../identity/verify-svid.ts';
import { recordHandshakeFailure } from '../listener/pre-handshake-gate.ts';
import { proxiedConnection } from '../listener/proxy-protocol-reader.ts';
import { acceptTls, opensslVerifyError, presentedChain } from '../tls/accept-tls.ts';
import {
  auditBaseFor,
  type ConnectionContext,
  newConnectionId,
  type ProxyRuntime,
  sourceOf,
} from './connection-context.ts';
import type { GatewayState } from './gateway-state.ts';

export type ModeHandler = (ctx: ConnectionContext) => void;

/** Sends a TCP RST, like an F5 iRule `reject`. Must be called on the raw socket: TLSSocket throws. */
export function resetConnection(raw: Socket): void {
  if (raw.destroyed) return;
  try {
    raw.resetAndDestroy();
  } catch {
    raw.destroy();
  }
}

/**
 * listener → TLS handshake → identity: the stages every connection goes through before its
 * listener's mode handler sees it. Any failure is audited as `identity-rejected` and reset.
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
    const id = newConnectionId();
    const source = sourceOf(raw);
    const startedAt = new Date();
    const startedNs = process.hrtime.bigint();
    acceptTls(raw, state.tlsContext, state.timeouts.handshakeMs).then(
      (tls) => {
        let peer: ReturnType<typeof verifyPeerSvid>;
        try {
          peer = verifyPeerSvid(presentedChain(tls), state.trustBundle);
          const opensslError = opensslVerifyError(tls);
          if (opensslError)
            throw new GatewayError('EGW_IDENTITY_CHAIN_UNTRUSTED', `OpenSSL rejected the chain: ${opensslError}`);
        } catch (error) {
          const gatewayError =
            error instanceof GatewayError ? error : new GatewayError('EGW_IDENTITY_MALFORMED', String(error));
          publishAudit({
            ...auditBaseFor(id, listener, source, tls, undefined),
            action: 'identity-rejected',
            reason: gatewayError.message,
            code: gatewayError.code,
          });
          recordHandshakeFailure(raw);
          resetConnection(raw);
          return;
        }
        tls.on('error', () => {}); // the mode handler reports its own failures
        // Taken once per connection; the mode handler answers a refusal in its own protocol.
        const limit = runtime.limiter.acquire(peer.spiffeId.uri, state.identityLimits);
        if (limit.ok) raw.once('close', limit.release);
        handler({
          id,
          listener,
          state,
          raw,
          tls,
          peer,
          source,
          startedAt,
          startedNs,
          runtime,
          limit,
          auditBase: auditBaseFor(id, listener, source, tls, peer),
        });
      },
      (error: GatewayError) => {
        // A TCP connect without a single byte (port scan, TCP health check; behind a balancer, one
        // that sent only its PROXY header, e.g. a LOCAL health check) is not a decision.
        if (
          raw.bytesRead <= (proxiedConnection(raw)?.headerBytes ?? 0) &&
          (error.code === 'EGW_TLS_HANDSHAKE' || error.code === 'EGW_TLS_HANDSHAKE_TIMEOUT')
        )
          return;
        publishAudit({
          ...auditBaseFor(id, listener, source, undefined, undefined),
          action: 'identity-rejected',
          reason: error.message,
          code: error.code,
        });
        recordHandshakeFailure(raw);
        resetConnection(raw);
      },
    );
  };
}

export function elapsedNs(startedNs: bigint): number {
  return Number(process.hrtime.bigint() - startedNs);
}
