import type { AuditHub } from './audit/audit-hub.ts';
import { buildAuditHub } from './audit/build-audit-hub.ts';
import { listenerSettings } from './config/listener-settings.ts';
import {
  adminToken,
  identityFiles,
  type LoadedConfig,
  loadConfig,
  parseConfig,
  resolveConfigPath,
} from './config/load-config.ts';
import { GatewayError, isGatewayError } from './core/errors.ts';
import { prepareDevPki } from './devtools/dev-pki.ts';
import { Gateway } from './gateway/gateway.ts';
import { bootSnapshot, type GatewaySnapshot } from './gateway/gateway-snapshot.ts';
import { metricsSources } from './gateway/metrics-sources.ts';
import { createProxyRuntime, type DrainableRuntime } from './gateway/proxy-runtime.ts';
import { createReloader } from './gateway/reloader.ts';
import { SnapshotStore } from './gateway/snapshot-store.ts';
import { watchFiles } from './gateway/watch-files.ts';
import { checkVerifyResultReadable } from './identity/verify-result-canary.ts';
import { SourcePenalty } from './listener/source-penalty.ts';
import { TcpListener } from './listener/tcp-listener.ts';
import { GatewayMetrics } from './metrics/gateway-metrics.ts';
import { ListenerStats } from './metrics/listener-stats.ts';
import { createConnectModeHandler } from './proxy/connect-mode.ts';
import type { ProxyRuntime } from './proxy/connection-context.ts';
import type { ListenerSettings } from './proxy/gateway-state.ts';
import { createConnectionPipeline } from './proxy/handle-connection.ts';
import { LiveConnections } from './proxy/live-connections.ts';
import { redecideOpen } from './proxy/redecide-tunnels.ts';
import { createTcpModeHandler } from './proxy/tcp-mode.ts';
import type { WorkloadApiSource } from './sources/workload-api/workload-api-source.ts';
import { HttpForwarder } from './upstream/http-forwarder.ts';

export type { Gateway } from './gateway/gateway.ts';

export interface StartOptions {
  readonly configPath: string;
  /** Start from this configuration text instead of reading `configPath` (cluster workers get the primary's last good one); reloads read the file. */
  readonly configText?: string;
  /** Where operational messages go (audit records go to the configured sinks). */
  readonly log?: (message: string) => void;
  /** Replaces the configured sinks (tests). */
  readonly auditHub?: AuditHub;
  /** Overrides `admin.listen` (tests use 127.0.0.1:0; cluster workers use "off"). */
  readonly adminListen?: string;
  /** Collect Node process metrics (default true). */
  readonly processMetrics?: boolean;
  /** Test-only fault injection for the per-connection error boundary (no CLI flag, no config key). */
  readonly faultProbe?: ProxyRuntime['faultProbe'];
}

/**
 * The composition root: config → snapshot → audit → metrics → listeners → admin → file watch →
 * Workload API. With `identity.workloadApi` there is no snapshot until the first SVID: the admin
 * API answers (/readyz 503); each update from the agent rebuilds the state, the first one binding the listeners.
 */
export async function startGateway(options: StartOptions): Promise<Gateway> {
  const log = options.log ?? ((message: string) => process.stderr.write(`${message}\n`));
  const boot = startConfig(options);
  await prepareDevPki(boot.config.identity, log);
  const workloadApi = await workloadApiSource(boot, log);
  const store = new SnapshotStore(
    workloadApi
      ? { config: boot.config, waitingFor: `waiting for the first X.509-SVID from ${workloadApi.source}` }
      : await bootSnapshot(boot),
  );
  // Fails the start if OpenSSL's verdict (which the identity stage requires) can no longer be read;
  // it runs while the listeners bind (its key generation is off-thread) and is awaited before the admin API.
  const canary = checkVerifyResultReadable();
  canary.catch(() => {});
  const audit = options.auditHub ?? buildAuditHub(boot.config.audit, { log });
  audit.start();
  const runtime = createProxyRuntime(options.faultProbe);
  const metrics = new GatewayMetrics(metricsSources(store, runtime, audit), {
    defaultMetrics: options.processMetrics ?? true,
  });
  const forwarder = new HttpForwarder({
    responseTimeoutMs: 60_000,
    maxPools: () => store.current.config.limits.maxUpstreamPools,
  });
  const connections = new LiveConnections();
  const penalty = sourcePenalty(store);
  const listeners = [...listenerSettings(boot.config).values()].map((s) =>
    listenerFor(s, store, runtime, { forwarder, connections, penalty }),
  );
  store.onSwap((next) => redecideOnSwap(next, { tunnels: runtime.tunnels, connections }, log));
  const reload = createReloader(store, options.configPath, {
    log,
    counted: (ok) => metrics.reloaded(ok),
    ...(workloadApi ? { identity: () => workloadApi.current() } : {}),
  });
  const listenerStats = new ListenerStats();
  const gateway = new Gateway({
    ...{ store, runtime, audit, metrics, listenerStats, listeners, forwarder, reload, log },
    ...(workloadApi ? { identitySource: workloadApi } : {}),
  });
  await serve(gateway, boot, canary, options.adminListen);
  if (boot.config.admin.watch) {
    const paths = [resolveConfigPath(boot.path), ...identityFiles(boot.config.identity)];
    gateway.setWatchers(watchFiles(paths, () => void gateway.reload()));
  }
  workloadApi?.onUpdate(() => void gateway.reload('identity'));
  workloadApi?.start();
  return gateway;
}

/** Binds the listeners, then (once the canary has passed) the admin API; a failure closes what is open. */
async function serve(
  gateway: Gateway,
  boot: LoadedConfig,
  canary: Promise<unknown>,
  adminListen: string | undefined,
): Promise<void> {
  try {
    await gateway.bindListeners();
    await canary;
    await gateway.serveAdmin(adminListen ?? boot.config.admin.listen, adminToken(boot.config, boot.path));
  } catch (error) {
    await gateway.abort();
    throw isGatewayError(error) || !(error instanceof Error)
      ? error
      : new GatewayError('EGW_LISTEN_FAILED', `admin API: ${error.message}`, { cause: error });
  }
}

/** One for every listener: a source that fails on one listener is penalised on all of them. */
function sourcePenalty(store: SnapshotStore): SourcePenalty {
  return new SourcePenalty(() => {
    const { limits } = store.current.config;
    return {
      failures: limits.handshakeFailuresPerSource,
      windowMs: limits.handshakeFailureWindow,
      penaltyMs: limits.handshakeFailurePenalty,
      maxPenaltyMs: Math.max(limits.handshakeFailurePenalty, limits.handshakeFailurePenaltyMax),
    };
  });
}

/** `identity.workloadApi`: the SVID and bundles stream from the agent instead of the files. */
async function workloadApiSource(
  boot: LoadedConfig,
  log: (message: string) => void,
): Promise<WorkloadApiSource | undefined> {
  const { workloadApi, trustDomain } = boot.config.identity;
  if (!workloadApi) return undefined;
  // @grpc/* costs ~0.2 s to load: only a gateway that talks to the agent pays for it.
  const { WorkloadApiSource } = await import('./sources/workload-api/workload-api-source.ts');
  return new WorkloadApiSource({ socket: workloadApi.socket, trustDomain, log });
}

function startConfig(options: StartOptions): LoadedConfig {
  if (options.configText === undefined) return loadConfig(options.configPath);
  return { path: options.configPath, config: parseConfig(options.configText, options.configPath) };
}

/** One listener: its mode handler behind the shared TLS → identity pipeline, limits read per connection. */
function listenerFor(
  settings: ListenerSettings,
  store: SnapshotStore,
  runtime: DrainableRuntime,
  shared: { forwarder: HttpForwarder; connections: LiveConnections; penalty: SourcePenalty },
): TcpListener {
  const current = () => store.current.state.listeners.get(settings.name) ?? settings;
  const handler =
    settings.mode === 'connect'
      ? createConnectModeHandler({ ...shared, currentState: () => store.current.state })
      : createTcpModeHandler();
  return new TcpListener({
    name: settings.name,
    host: settings.host,
    port: settings.port,
    mode: settings.mode,
    maxConnections: () => current().maxConnections,
    preHandshake: () => {
      const { limits, timeouts } = store.current.config;
      return {
        maxSockets: limits.maxPreHandshakeSockets,
        maxPerSource: limits.maxPreHandshakeSocketsPerSource,
        firstByteMs: Math.min(timeouts.firstByte, timeouts.handshake),
        auditIntervalMs: limits.preHandshakeAuditInterval,
      };
    },
    penalty: shared.penalty,
    proxyProtocol: () => {
      const from = current().proxyProtocolFrom;
      return from ? { trusts: (ip: string) => from.has(ip) } : undefined;
    },
    onConnection: createConnectionPipeline(() => store.current.state, settings.name, handler, runtime),
  });
}

/** Every swap re-decides what is open: decisions follow every reload (issue 10). */
function redecideOnSwap(
  next: GatewaySnapshot,
  open: { tunnels: DrainableRuntime['tunnels']; connections: LiveConnections },
  log: (message: string) => void,
): void {
  try {
    const closed = redecideOpen(open, next.state, { rules: next.config.reload.redecideTunnels });
    if (closed > 0) log(`reload: closed ${closed} open tunnels or connections the new configuration refuses`);
  } catch (error) {
    // The new snapshot is in effect either way; a failed re-decision must not undo or fail the reload.
    log(`reload: re-deciding open tunnels failed: ${error instanceof Error ? error.message : String(error)}`);
  }
}
