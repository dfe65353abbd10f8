import { buildGatewayState } from '../config/build-state.ts';
import type { GatewayConfig } from '../config/config-schema.ts';
import { deepFreeze, type LoadedConfig } from '../config/load-config.ts';
import { GatewayError } from '../core/errors.ts';
import type { GatewayState } from '../proxy/gateway-state.ts';
import type { IdentityMaterial } from '../sources/identity-material.ts';
import { effectiveConfig, identitySourceChange, listenerShapeChange, pendingRestart } from './restart-only.ts';

/**
 * What the gateway runs on, as one value: the configuration in effect and the state compiled from
 * it. Replaced as a whole on reload, so no reader can see the config of one reload and the state of
 * another.
 */
export interface GatewaySnapshot {
  /** Deep-frozen. Reloadable sections come from the last good reload, restart-only ones from the start. */
  readonly config: GatewayConfig;
  readonly state: GatewayState;
  /** Restart-only keys the file changed since the start; they apply at the next restart. */
  readonly pendingRestart: readonly string[];
  /** The file the config was read from. */
  readonly source: string;
}

/** The first snapshot: everything in the file is in effect. */
export async function bootSnapshot(loaded: LoadedConfig): Promise<GatewaySnapshot> {
  const state = await buildGatewayState(loaded.config, loaded.path);
  return Object.freeze({ config: loaded.config, state, pendingRestart: Object.freeze([]), source: loaded.path });
}

/**
 * The snapshot a reload would swap in; throws (and changes nothing) when the file cannot be applied.
 * `running` is the snapshot in effect, or the config as started when there is none yet. `identity`
 * is the latest SVID and bundle from the Workload API (undefined: the files in the config are read).
 */
export async function reloadSnapshot(
  running: Pick<GatewaySnapshot, 'config'>,
  loaded: LoadedConfig,
  identity?: IdentityMaterial,
): Promise<GatewaySnapshot> {
  const change =
    listenerShapeChange(running.config, loaded.config) ?? identitySourceChange(running.config, loaded.config);
  if (change) throw new GatewayError('EGW_RELOAD_FAILED', `${loaded.path}: ${change}`);
  const config = deepFreeze(effectiveConfig(running.config, loaded.config));
  const state = await buildGatewayState(config, loaded.path, identity);
  return Object.freeze({
    config,
    state,
    pendingRestart: Object.freeze(pendingRestart(running.config, loaded.config)),
    source: loaded.path,
  });
}
