import type { AuditHub } from './audit/audit-hub.ts';
import { buildAuditHub } from './audit/build-audit-hub.ts';
import { adminToken, type LoadedConfig, loadConfig, parseConfig, resolveConfigPath } from './config/load-config.ts';
import { GatewayError, isGatewayError } from './core/errors.ts';
import { prepareDevPki } from './devtools/dev-pki.ts';
import { Gateway } from './gateway/gateway.ts';
import { bootSnapshot } from './gateway/gateway-snapshot.ts';
import { metricsSources } from './gateway/metrics-sources.ts';
import { createProxyRuntime, type DrainableRuntime } from './gateway/proxy-runtime.ts';
import { createReloader } from './gateway/reloader.ts';
import { SnapshotStore } from './gateway/snapshot-store.ts';
import { watchFiles } from './gateway/watch-files.ts';
import { TcpListener } from './listener/tcp-listener.ts';
import { GatewayMetrics } from './metrics/gateway-metrics.ts';
import { ListenerStats } from './metrics/listener-stats.ts';
import { createConnectModeHandler } from './proxy/connect-mode.ts';
import type { ProxyRuntime } from './proxy/connection-context.ts';
import type { ListenerSettings } from './proxy/gateway-state.ts';
import { createConnectionPipeline } from './proxy/handle-connection.ts';
import { createTcpModeHandler } from './proxy/tcp-mode.ts';
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

/** The composition root: config → snapshot → audit → metrics → listeners → admin → file watch. */
export async function startGateway(options: StartOptions): Promise<Gateway> {
  const log = options.log ?? ((message: string) => process.stderr.write(`${message}\n`));
  const boot = startConfig(options);
  await prepareDevPki(boot.config.identity, log);
  const store = new SnapshotStore(await bootSnapshot(boot));
  const audit = options.auditHub ?? buildAuditHub(boot.config.audit, { log });
  audit.start();
  const runtime = createProxyRuntime(options.faultProbe);
  const metrics = new GatewayMetrics(metricsSources(store, runtime, audit), {
    defaultMetrics: options.processMetrics ?? true,
  });
  const forwarder = new HttpForwarder({ responseTimeoutMs: 60_000 });
  const listeners = [...store.current.state.listeners.values()].map((s) => listenerFor(s, store, runtime, forwarder));
  const reload = createReloader(store, options.configPath, { log, counted: (ok) => metrics.reloaded(ok) });
  const listenerStats = new ListenerStats();
  const gateway = new Gateway({ store, runtime, audit, metrics, listenerStats, listeners, forwarder, reload, log });
  try {
    await gateway.bindListeners();
    await gateway.serveAdmin(options.adminListen ?? boot.config.admin.listen, adminToken(boot.config, boot.path));
  } catch (error) {
    await gateway.abort();
    throw isGatewayError(error) || !(error instanceof Error)
      ? error
      : new GatewayError('EGW_LISTEN_FAILED', `admin API: ${error.message}`, { cause: error });
  }
  if (boot.config.admin.watch) {
    const { cert, key, trustAnchors } = boot.config.identity;
    const paths = [boot.path, cert, key, trustAnchors].map(resolveConfigPath);
    gateway.setWatchers(watchFiles(paths, () => void gateway.reload()));
  }
  return gateway;
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
  forwarder: HttpForwarder,
): TcpListener {
  const current = () => store.current.state.listeners.get(settings.name) ?? settings;
  const handler = settings.mode === 'connect' ? createConnectModeHandler({ forwarder }) : createTcpModeHandler();
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
    onConnection: createConnectionPipeline(() => store.current.state, settings.name, handler, runtime),
  });
}
