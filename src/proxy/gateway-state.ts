import type { SecureContext } from 'node:tls';
import type { IpSet } from '../core/ip-set.ts';
import type { SnatPool } from '../core/snat-pool.ts';
import type { TrustBundle } from '../identity/trust-bundle.ts';
import type { CertificateFacts } from '../pki/certificate-facts.ts';
import type { CompiledPolicy } from '../policy/compile-policy.ts';
import type { HostResolver } from '../upstream/resolve-host.ts';
import type { IdentityLimits } from './identity-limiter.ts';

export interface ListenerSettings {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  readonly mode: 'connect' | 'tcp';
  /** report: a policy deny (unless its rule says `enforce: always`) is let through and audited. */
  readonly enforcement?: 'enforce' | 'report';
  readonly snat?: SnatPool;
  /** tcp mode only: the fixed upstream. */
  readonly upstream?: { readonly host: string; readonly port: number };
  readonly maxConnections: number;
  /** Balancer addresses that must open every connection with a PROXY v2 header; absent: no header. */
  readonly proxyProtocolFrom?: IpSet;
  /** tcp mode: a PROXY v2 header goes to the upstream before the client's bytes. */
  readonly upstreamProxyProtocol?: 'v2';
}

export interface Timeouts {
  readonly handshakeMs: number;
  readonly requestHeadMs: number;
  readonly connectMs: number;
  readonly idleMs: number;
  /** connect mode: age after which a kept-alive connection is closed (0 = never). */
  readonly connectionMaxAgeMs: number;
}

/**
 * Everything a connection needs, compiled from the configuration and frozen. A reload builds a
 * new state and swaps the reference; every request and every open tunnel is decided against the
 * current one (src/proxy/redecide-tunnels.ts), the handshake itself against the one it began with.
 */
export interface GatewayState {
  readonly tlsContext: SecureContext;
  readonly trustBundle: TrustBundle;
  /** The gateway's own leaf certificate (readiness and expiry metrics). */
  readonly serverCertificate: CertificateFacts;
  readonly policy: CompiledPolicy;
  readonly resolver: HostResolver;
  readonly timeouts: Timeouts;
  readonly maxHeaderBytes: number;
  /** connect mode: requests one kept-alive connection may carry (0 = unlimited). */
  readonly maxRequestsPerConnection: number;
  readonly identityLimits: IdentityLimits;
  readonly listeners: ReadonlyMap<string, ListenerSettings>;
}
