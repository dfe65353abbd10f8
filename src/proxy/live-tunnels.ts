import type { GatewayError } from '../core/errors.ts';
import type { TrustBundle } from '../identity/trust-bundle.ts';
import { type PeerIdentity, recheckPeer } from '../identity/verify-svid.ts';

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
 * After a reload: ends every tunnel whose identity the new bundle no longer trusts (revoked by a
 * new CRL, anchor removed, expired), with the refusal as its egress-closed reason. Tunnels of one
 * chain share one re-check, so 10 000 tunnels of a few workloads cost a few signature checks.
 */
export function closeUntrustedTunnels(tunnels: LiveTunnels, bundle: TrustBundle, now: Date = new Date()): number {
  const verdicts = new Map<string, GatewayError | undefined>();
  let closed = 0;
  for (const tunnel of tunnels.list()) {
    if (!tunnel.peer || !tunnel.close) continue;
    const key = tunnel.peer.path.map((cert) => cert.sha256).join(':');
    if (!verdicts.has(key)) verdicts.set(key, recheckPeer(tunnel.peer, bundle, now));
    const refusal = verdicts.get(key);
    if (!refusal) continue;
    tunnel.close(`reload: identity no longer trusted: ${refusal.code}: ${refusal.message}`);
    closed += 1;
  }
  return closed;
}
