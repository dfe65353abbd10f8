import type { GatewayConfig } from '../config/config-schema.ts';
import { GatewayError } from '../core/errors.ts';
import type { GatewaySnapshot } from './gateway-snapshot.ts';

/** `previous` is undefined for the first snapshot of a gateway that started without one. */
export type SnapshotListener = (next: GatewaySnapshot, previous: GatewaySnapshot | undefined) => void;

/**
 * A start without a snapshot: the identity comes from the Workload API and no SVID has arrived
 * yet, so no state can be compiled. The admin API answers meanwhile; no listener is bound.
 */
export interface AwaitedSnapshot {
  /** The configuration as started (deep-frozen): the restart-only sections in effect. */
  readonly config: GatewayConfig;
  /** What is awaited, as /readyz reports it. */
  readonly waitingFor: string;
}

/**
 * Holds the one current snapshot. A swap is a single reference assignment: a reader sees the old
 * snapshot or the new one, never a mix. Listeners hear of every swap (metrics, and later the
 * re-decision of open tunnels against the new state).
 */
export class SnapshotStore {
  #current: GatewaySnapshot | undefined;
  readonly #awaited: AwaitedSnapshot | undefined;
  readonly #listeners = new Set<SnapshotListener>();

  constructor(initial: GatewaySnapshot | AwaitedSnapshot) {
    if ('waitingFor' in initial) this.#awaited = initial;
    else this.#current = initial;
  }

  /**
   * The current snapshot. Before the first one only the admin API runs (listeners bind on the
   * first), so this throws for admin questions that need a state, never for a connection.
   */
  get current(): GatewaySnapshot {
    if (this.#current) return this.#current;
    throw new GatewayError('EGW_WORKLOAD_API_UNAVAILABLE', `no state yet: ${this.#awaited?.waitingFor}`);
  }

  /** The current snapshot, undefined before the first. */
  get latest(): GatewaySnapshot | undefined {
    return this.#current;
  }

  /** Why there is no snapshot yet; undefined once there is one. */
  get waitingFor(): string | undefined {
    return this.#current ? undefined : this.#awaited?.waitingFor;
  }

  /** The configuration in effect: the current snapshot's, or the one started with while waiting. */
  get config(): GatewayConfig {
    return (this.#current ?? (this.#awaited as AwaitedSnapshot)).config;
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
