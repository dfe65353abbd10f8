import type { SecureContext } from 'node:tls';
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
}

export interface Timeouts {
  readonly handshakeMs: number;
  readonly requestHeadMs: number;
  readonly connectMs: number;
  readonly idleMs: number;
}

/**
 * Everything a new connection needs, compiled from the configuration and frozen. A reload builds
 * a new state and swaps the reference; a connection keeps the state it started with.
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
  readonly identityLimits: IdentityLimits;
  readonly listeners: ReadonlyMap<string, ListenerSettings>;
}
