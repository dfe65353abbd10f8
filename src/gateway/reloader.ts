import { buildGatewayState } from '../config/build-state.ts';
import { loadConfig } from '../config/load-config.ts';
import { isGatewayError } from '../core/errors.ts';
import type { IdentityMaterial } from '../sources/identity-material.ts';
import { type GatewaySnapshot, reloadSnapshot } from './gateway-snapshot.ts';
import type { SnapshotStore } from './snapshot-store.ts';

export interface ReloadResult {
  readonly ok: boolean;
  readonly error?: string;
}

/**
 * "file" (SIGHUP, POST /reload, file watch): re-read the config file. "identity" (the Workload API
 * sent a new SVID or bundle): rebuild the state from the config in effect, without re-reading the
 * file, so an SVID rotation never waits on a file that is being edited.
 */
export type ReloadTrigger = 'file' | 'identity';

export type Reload = (trigger?: ReloadTrigger) => Promise<ReloadResult>;

export interface ReloadHooks {
  readonly log: (message: string) => void;
  readonly counted: (ok: boolean) => void;
  /** The latest identity from the Workload API, when it is the identity source. */
  readonly identity?: () => IdentityMaterial | undefined;
}

/** The snapshot in effect with a state built on the latest identity; the first one from the config as started. */
async function withNewIdentity(store: SnapshotStore, source: string, identity: IdentityMaterial | undefined) {
  const running = store.latest ?? { config: store.config, pendingRestart: Object.freeze([]), source };
  const state = await buildGatewayState(running.config, running.source, identity);
  return Object.freeze({ ...running, state }) satisfies GatewaySnapshot;
}

/**
 * Returns `reload()`: builds a whole new snapshot (see ReloadTrigger) and swaps it in; on any
 * failure the running snapshot stays. Reloads run one after another, so two quick SIGHUPs cannot
 * interleave and swap in an older file last, nor an SVID update an older SVID.
 */
export function createReloader(store: SnapshotStore, configPath: string, hooks: ReloadHooks): Reload {
  let chain: Promise<unknown> = Promise.resolve();
  const once = async (trigger: ReloadTrigger): Promise<ReloadResult> => {
    try {
      const identity = hooks.identity?.();
      const next =
        trigger === 'identity'
          ? await withNewIdentity(store, configPath, identity)
          : await reloadSnapshot({ config: store.config }, loadConfig(configPath), identity);
      store.swap(next);
      hooks.counted(true);
      const what = trigger === 'identity' ? `the identity from ${identity?.source}` : next.source;
      const pending = next.pendingRestart.length > 0 ? `; at the next restart: ${next.pendingRestart.join(', ')}` : '';
      hooks.log(
        `reloaded ${what}: ${next.state.policy.rules.length} rules, ${next.state.trustBundle.anchors.length} trust anchors${pending}`,
      );
      return { ok: true };
    } catch (error) {
      hooks.counted(false);
      const message = error instanceof Error ? error.message : String(error);
      hooks.log(`reload failed, keeping the running configuration: ${message}`);
      return { ok: false, error: isGatewayError(error) ? `${error.code}: ${message}` : message };
    }
  };
  return (trigger = 'file') => {
    const result = chain.then(() => once(trigger));
    chain = result;
    return result;
  };
}
