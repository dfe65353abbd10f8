import { encodeProxyV2, PP2_TYPE_EGW_SPIFFE_ID, PP2_TYPE_UNIQUE_ID } from '../listener/proxy-protocol.ts';
import { proxiedConnection } from '../listener/proxy-protocol-reader.ts';
import type { ConnectionContext } from './connection-context.ts';

/**
 * The PROXY v2 header a tcp-mode upstream gets with `upstreamProxyProtocol: v2`: who called
 * (the client address, the balancer's PROXY source when there is one), the address it called,
 * its SPIFFE ID in TLV 0xE0 and the audit connection id in PP2_TYPE_UNIQUE_ID, so an upstream
 * log line can be joined with the gateway's audit records.
 */
export function upstreamProxyHeader(ctx: ConnectionContext): Buffer {
  const destination = proxiedConnection(ctx.raw)?.destination ?? {
    ip: ctx.raw.localAddress ?? '',
    port: ctx.raw.localPort ?? 0,
  };
  return encodeProxyV2({
    source: ctx.source,
    destination,
    tlvs: [
      { type: PP2_TYPE_UNIQUE_ID, value: Buffer.from(ctx.id) },
      { type: PP2_TYPE_EGW_SPIFFE_ID, value: Buffer.from(ctx.peer.spiffeId.uri) },
    ],
  });
}
