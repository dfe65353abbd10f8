import type { GatewayConfig } from '../config/config-schema.ts';

/**
 * Sections read once at start: the audit sinks are open connections, the admin API is a bound
 * server with its token and watchers, and the worker count is the number of forked processes. A
 * reload leaves them as they are, so the running config never claims something that is not in effect.
 */
export const RESTART_ONLY_SECTIONS = ['audit', 'admin', 'workers'] as const;

/** Key-order independent JSON, so a re-ordered YAML mapping is not reported as a change. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([key, inner]) => `${JSON.stringify(key)}:${canonicalJson(inner)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'undefined';
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The config in effect after a reload: reloadable sections from `loaded`, restart-only ones from `running`. */
export function effectiveConfig(running: GatewayConfig, loaded: GatewayConfig): GatewayConfig {
  return { ...loaded, audit: running.audit, admin: running.admin, workers: running.workers };
}

/**
 * Restart-only keys whose value in the file differs from the running one, e.g.
 * `admin.certExpiryWindow` or `audit.sinks`. Names only: a changed token is reported, never shown.
 */
export function pendingRestart(running: GatewayConfig, loaded: GatewayConfig): string[] {
  const pending: string[] = [];
  for (const section of RESTART_ONLY_SECTIONS) {
    const before: unknown = running[section];
    const after: unknown = loaded[section];
    if (isRecord(before) && isRecord(after)) {
      const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
      for (const key of keys)
        if (canonicalJson(before[key]) !== canonicalJson(after[key])) pending.push(`${section}.${key}`);
    } else if (canonicalJson(before) !== canonicalJson(after)) pending.push(section);
  }
  return pending.sort();
}

/** Listener names, addresses and modes are bound sockets: changing them needs a restart. */
export function listenerShapeChange(before: GatewayConfig, after: GatewayConfig): string | undefined {
  const shape = (c: GatewayConfig) => c.listeners.map((l) => `${l.name} ${l.listen} ${l.mode}`).join('\n');
  return shape(before) === shape(after)
    ? undefined
    : 'listeners were added, removed, renamed, moved or changed mode; restart the gateway to apply that';
}

/**
 * The Workload API source (its socket and streams) is opened at start, and the state is built from
 * what it sends: switching between it and the cert/key/trustAnchors files, or to another socket,
 * needs a restart, or the state would silently keep the identity of the other source.
 */
export function identitySourceChange(before: GatewayConfig, after: GatewayConfig): string | undefined {
  return before.identity.workloadApi?.socket === after.identity.workloadApi?.socket
    ? undefined
    : 'identity.workloadApi was added, removed or changed its socket; restart the gateway to apply that';
}
