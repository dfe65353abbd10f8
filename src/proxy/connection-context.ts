import { randomUUID } from 'node:crypto';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { AuditPeerCertificate } from '../core/audit-event.ts';
import type { AuditBase } from '../core/audit-records.ts';
import type { PeerIdentity } from '../identity/verify-svid.ts';
import { clientAddress } from '../listener/proxy-protocol-reader.ts';
import type { CertificateFacts } from '../pki/certificate-facts.ts';
import type { FaultPoint } from './error-boundary.ts';
import type { GatewayState, ListenerSettings } from './gateway-state.ts';
import type { IdentityLimiter, LimitVerdict } from './identity-limiter.ts';
import type { LiveTunnels } from './live-tunnels.ts';

/** Process-wide services the proxy stage shares across connections and reloads. */
export interface ProxyRuntime {
  readonly tunnels: LiveTunnels;
  readonly limiter: IdentityLimiter;
  /** True once SIGTERM started the drain: no new requests on kept-alive connections. */
  isDraining(): boolean;
  /**
   * Test-only: called at named points of every connection so an in-process test can throw into
   * one and prove the error boundary. Set only through startGateway's options, never by config.
   */
  readonly faultProbe?: (point: FaultPoint, ctx: ConnectionContext) => void;
}

/** The one object passed down the data path for an authenticated client connection. */
export interface ConnectionContext {
  readonly id: string;
  readonly listener: ListenerSettings;
  /** The state the handshake ran on; connect mode hands each request a copy with the current one. */
  readonly state: GatewayState;
  readonly raw: Socket;
  readonly tls: TLSSocket;
  readonly peer: PeerIdentity;
  readonly source: { readonly ip: string; readonly port: number };
  readonly startedAt: Date;
  readonly startedNs: bigint;
  readonly runtime: ProxyRuntime;
  /** The per-identity limit verdict taken when the identity was established. */
  readonly limit: LimitVerdict;
  /** Audit fields every record of this connection carries. */
  readonly auditBase: AuditBase;
}

export function newConnectionId(): string {
  return randomUUID();
}

/** The client: the PROXY v2 header's source on a listener behind a balancer, else the socket's peer. */
export function sourceOf(raw: Socket): { ip: string; port: number } {
  return { ...clientAddress(raw) };
}

/**
 * One audit view per certificate: the validated-path cache hands every connection of an SVID the
 * same facts object, so its records share this one too, and a sink can keep what it derives from it.
 */
const auditCertificates = new WeakMap<CertificateFacts, AuditPeerCertificate>();

function auditCertificate(leaf: CertificateFacts): AuditPeerCertificate {
  let view = auditCertificates.get(leaf);
  if (!view) {
    view = Object.freeze({
      serialNumber: leaf.serialNumber,
      issuer: leaf.issuer,
      subject: leaf.subject,
      sha256: leaf.sha256,
      notBefore: leaf.notBefore.toISOString(),
      notAfter: leaf.notAfter.toISOString(),
      alternativeNames: Object.freeze([...leaf.uris, ...leaf.dnsNames, ...leaf.ipAddresses]),
    });
    auditCertificates.set(leaf, view);
  }
  return view;
}

export function auditBaseFor(
  id: string,
  listener: ListenerSettings,
  source: { ip: string; port: number },
  tls: TLSSocket | undefined,
  peer: PeerIdentity | undefined,
): AuditBase {
  const leaf = peer?.leaf;
  const protocol = tls?.getProtocol?.() ?? undefined;
  const cipher = tls?.getCipher?.();
  return {
    connectionId: id,
    listener: listener.name,
    mode: listener.mode,
    source,
    ...(peer
      ? {
          identity: {
            spiffeId: peer.spiffeId.uri,
            trustDomain: peer.spiffeId.trustDomain,
            ...(peer.spiffeId.namespace ? { namespace: peer.spiffeId.namespace } : {}),
            ...(peer.spiffeId.serviceAccount ? { serviceAccount: peer.spiffeId.serviceAccount } : {}),
          },
        }
      : {}),
    ...(leaf ? { certificate: auditCertificate(leaf) } : {}),
    ...(tls
      ? {
          tls: {
            ...(protocol ? { version: protocol } : {}),
            ...(cipher ? { cipher: cipher.standardName ?? cipher.name } : {}),
            ...(typeof tls.servername === 'string' && tls.servername ? { serverName: tls.servername } : {}),
          },
        }
      : {}),
  };
}
