import type { SpiffeId } from '../identity/spiffe-id.ts';
import type { ClosedBecause, ConnectionTrust } from './connection-trust.ts';

/** What re-deciding an open tunnel needs (on reload, at expiry), and how to end it. */
export interface TunnelRecheck {
  readonly trust: ConnectionTrust;
  readonly identity: SpiffeId;
  readonly listener: string;
  /** Where the tunnel goes: the host asked for, the port, and the IP it is connected to. */
  readonly destination: { readonly host: string; readonly port: number; readonly ip: string };
  /** Ends the tunnel at once, both sides; its `egress-closed` record carries `because`. */
  close(because: ClosedBecause): void;
}

/** One open tunnel (CONNECT, tcp relay, or an in-flight absolute-form request). */
export interface LiveTunnel {
  readonly connectionId: string;
  readonly listener: string;
  readonly spiffeId: string;
  /** The client as `ip:port` (the PROXY header's source behind a balancer). */
  readonly source?: string;
  readonly destination: string;
  readonly snat?: string;
  readonly startedAt: Date;
  /** Live byte counts, read on demand. */
  readonly bytes: { readonly fromClient: number; readonly toClient: number };
  /** Absent on entries that cannot be re-decided. */
  readonly recheck?: TunnelRecheck;
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
