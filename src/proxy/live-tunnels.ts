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
