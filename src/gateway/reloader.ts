import { loadConfig } from '../config/load-config.ts';
import { isGatewayError } from '../core/errors.ts';
import type { IdentityMaterial } from '../sources/identity-material.ts';
import { reloadSnapshot } from './gateway-snapshot.ts';
import type { SnapshotStore } from './snapshot-store.ts';

export interface ReloadResult {
  readonly ok: boolean;
  readonly error?: string;
}

export interface ReloadHooks {
  readonly log: (message: string) => void;
  readonly counted: (ok: boolean) => void;
  /** The latest identity from the Workload API, when it is the identity source. */
  readonly identity?: () => IdentityMaterial | undefined;
}

/**
 * Returns `reload()`: re-reads `configPath`, builds a whole new snapshot and swaps it in; on any
 * failure the running snapshot stays. Reloads run one after another, so two quick SIGHUPs cannot
 * interleave and swap in an older file last. A Workload API update reloads too (with its SVID).
 */
export function createReloader(
  store: SnapshotStore,
  configPath: string,
  hooks: ReloadHooks,
): () => Promise<ReloadResult> {
  let chain: Promise<unknown> = Promise.resolve();
  const once = async (): Promise<ReloadResult> => {
    try {
      const next = await reloadSnapshot({ config: store.config }, loadConfig(configPath), hooks.identity?.());
      store.swap(next);
      hooks.counted(true);
      const pending = next.pendingRestart.length > 0 ? `; at the next restart: ${next.pendingRestart.join(', ')}` : '';
      hooks.log(
        `reloaded ${next.source}: ${next.state.policy.rules.length} rules, ${next.state.trustBundle.anchors.length} trust anchors${pending}`,
      );
      return { ok: true };
    } catch (error) {
      hooks.counted(false);
      const message = error instanceof Error ? error.message : String(error);
      hooks.log(`reload failed, keeping the running configuration: ${message}`);
      return { ok: false, error: isGatewayError(error) ? `${error.code}: ${message}` : message };
    }
  };
  return () => {
    const result = chain.then(once);
    chain = result;
    return result;
  };
}
