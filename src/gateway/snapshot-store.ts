import type { GatewaySnapshot } from './gateway-snapshot.ts';

export type SnapshotListener = (next: GatewaySnapshot, previous: GatewaySnapshot) => void;

/**
 * Holds the one current snapshot. A swap is a single reference assignment: a reader sees the old
 * snapshot or the new one, never a mix. Listeners hear of every swap (metrics, and later the
 * re-decision of open tunnels against the new state).
 */
export class SnapshotStore {
  #current: GatewaySnapshot;
  readonly #listeners = new Set<SnapshotListener>();

  constructor(initial: GatewaySnapshot) {
    this.#current = initial;
  }

  get current(): GatewaySnapshot {
    return this.#current;
  }

  swap(next: GatewaySnapshot): void {
    const previous = this.#current;
    this.#current = next;
    for (const listener of this.#listeners) listener(next, previous);
  }

  /** Calls `listener` after every swap; returns the unsubscribe function. */
  onSwap(listener: SnapshotListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}
