import type { ConnectionTrust } from './connection-trust.ts';

/**
 * The authenticated connect-mode connections now open (kept-alive or not), so that a reload can
 * end those whose identity the new state no longer trusts. Tunnels are in LiveTunnels.
 */
export class LiveConnections {
  readonly #open = new Set<ConnectionTrust>();

  /** Registers a connection; call the returned function when it closes. */
  add(trust: ConnectionTrust): () => void {
    this.#open.add(trust);
    return () => this.#open.delete(trust);
  }

  list(): readonly ConnectionTrust[] {
    return [...this.#open];
  }

  get size(): number {
    return this.#open.size;
  }
}
