import type { GatewayError } from '../core/errors.ts';
import { revocationOf } from '../identity/revocation.ts';
import type { TrustBundle } from '../identity/trust-bundle.ts';
import type { PeerIdentity } from '../identity/verify-svid.ts';

/** One open tunnel (CONNECT, tcp relay, or an in-flight absolute-form request). */
export interface LiveTunnel {
  readonly connectionId: string;
  readonly listener: string;
  readonly spiffeId: string;
  readonly destination: string;
  readonly snat?: string;
  readonly startedAt: Date;
  /** Live byte counts, read on demand. */
  readonly bytes: { readonly fromClient: number; readonly toClient: number };
  /** The identity the tunnel was opened with, re-checked when a reload changes anchors or CRLs. */
  readonly peer?: PeerIdentity;
  /** Ends the tunnel; `reason` becomes its egress-closed record's reason. */
  readonly close?: (reason: string) => void;
}

/** The registry behind admin `/connections` and the active-tunnel gauge. */
export class LiveTunnels {
  readonly #tunnels = new Set<LiveTunnel>();

  /** Registers a tunnel; call the returned function when it closes. */
  add(tunnel: LiveTunnel): () => void {
    this.#tunnels.add(tunnel);
    return () => this.#tunnels.delete(tunnel);
  }

  list(): readonly LiveTunnel[] {
    return [...this.#tunnels];
  }

  get size(): number {
    return this.#tunnels.size;
  }
}

/**
 * After a reload: ends every tunnel whose certificate (or an intermediate of its path) a CRL of
 * the new bundle revokes, with the refusal as its egress-closed reason. Only the CRL lookup runs,
 * no signature check, and tunnels of one chain share it. Other changes of trust (anchor removed,
 * expiry) are left to the re-decision of open tunnels on reload (issue 10 item 3, recheckPeer).
 */
export function closeRevokedTunnels(tunnels: LiveTunnels, bundle: TrustBundle, now: Date = new Date()): number {
  if (!bundle.revocation || bundle.revocation.crls.length === 0) return 0;
  const verdicts = new Map<string, GatewayError | undefined>();
  let closed = 0;
  for (const tunnel of tunnels.list()) {
    if (!tunnel.peer || !tunnel.close) continue;
    const key = tunnel.peer.path.map((cert) => cert.sha256).join(':');
    if (!verdicts.has(key)) verdicts.set(key, revocationOf(tunnel.peer.path, bundle.revocation, now));
    const refusal = verdicts.get(key);
    if (!refusal) continue;
    tunnel.close(`reload: identity no longer trusted: ${refusal.code}: ${refusal.message}`);
    closed += 1;
  }
  return closed;
}
