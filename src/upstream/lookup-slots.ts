/** Why a slot was refused: the key's own cap or the gateway-wide one. */
export type SlotRefusal = 'per-key' | 'global';

export interface LookupSlots {
  /** A release function, or the cap that refused (never queued: the caller answers at once). */
  acquire(key: string): (() => void) | SlotRefusal;
  inFlight(key?: string): number;
}

/**
 * Bounded concurrency for DNS lookups, per identity and in total, so that one identity's slow
 * zone holds at most its own slots and never delays another's lookups (issue 9). A slot is held
 * until the lookup has really ended (answered, failed or cancelled), not until the caller gave up.
 * 0 disables a cap.
 */
export function createLookupSlots(perKey: number, total: number): LookupSlots {
  const byKey = new Map<string, number>();
  let all = 0;
  return {
    acquire(key) {
      const held = byKey.get(key) ?? 0;
      if (perKey > 0 && held >= perKey) return 'per-key';
      if (total > 0 && all >= total) return 'global';
      byKey.set(key, held + 1);
      all += 1;
      let released = false;
      return () => {
        if (released) return;
        released = true;
        all -= 1;
        const left = (byKey.get(key) ?? 1) - 1;
        // Delete at zero so the map holds only identities with a lookup in flight.
        if (left === 0) byKey.delete(key);
        else byKey.set(key, left);
      };
    },
    inFlight(key) {
      return key === undefined ? all : (byKey.get(key) ?? 0);
    },
  };
}
