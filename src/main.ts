import { type FSWatcher, watch } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import type { AdminBackend, Readiness } from './admin/admin-backend.ts';
import { startAdminServer } from './admin/admin-server.ts';
import type { AuditHub } from './audit/audit-hub.ts';
import { buildAuditHub } from './audit/build-audit-hub.ts';
import { buildGatewayState } from './config/build-state.ts';
import type { GatewayConfig } from './config/config-schema.ts';
import { adminToken, loadConfig, parseConfig, resolveConfigPath } from './config/load-config.ts';
import { GatewayError, isGatewayError } from './core/errors.ts';
import { ensureDevPki } from './devtools/dev-pki.ts';
import { TcpListener } from './listener/tcp-listener.ts';
import { GatewayMetrics } from './metrics/gateway-metrics.ts';
import { ListenerStats } from './metrics/listener-stats.ts';
import { checkPolicy } from './proxy/check-policy.ts';
import { createConnectModeHandler } from './proxy/connect-mode.ts';
import type { ProxyRuntime } from './proxy/connection-context.ts';
import type { GatewayState } from './proxy/gateway-state.ts';
import { createConnectionPipeline } from './proxy/handle-connection.ts';
import { IdentityLimiter } from './proxy/identity-limiter.ts';
import { LiveTunnels } from './proxy/live-tunnels.ts';
import { createTcpModeHandler } from './proxy/tcp-mode.ts';
import { HttpForwarder } from './upstream/http-forwarder.ts';

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

export interface Gateway extends AdminBackend {
  readonly config: GatewayConfig;
  /** Bound addresses by listener name (resolves port 0). */
  readonly addresses: ReadonlyMap<string, { host: string; port: number }>;
  /** The admin API address, when it listens. */
  readonly adminAddress: { host: string; port: number } | undefined;
  readonly audit: AuditHub;
  readonly metricsRegistry: GatewayMetrics['registry'];
  state(): GatewayState;
  /** Stops accepting, lets open tunnels finish up to `drainMs`, then closes them; flushes audit. */
  close(drainMs?: number): Promise<{ forcedClosed: number }>;
}

const REDACTED = '<redacted>';

/** Effective config for GET /config: every secret-looking key replaced. */
function redact(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(redact);
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value).map(([key, inner]) => [key, /token|password|secret/i.test(key) ? REDACTED : redact(inner)]),
    );
  }
  return value;
}

/** Listener names, addresses and modes are bound sockets: changing them needs a restart. */
function listenerShapeChange(before: GatewayConfig, after: GatewayConfig): string | undefined {
  const shape = (c: GatewayConfig) => c.listeners.map((l) => `${l.name} ${l.listen} ${l.mode}`).join('\n');
  return shape(before) === shape(after)
    ? undefined
    : 'listeners were added, removed, renamed, moved or changed mode; restart the gateway to apply that';
}

/** Watches the config and certificate files' directories (Kubernetes swaps secrets by renaming a symlink). */
function watchFiles(paths: readonly string[], onChange: () => void): FSWatcher[] {
  const byDir = new Map<string, Set<string>>();
  for (const path of paths) {
    const dir = dirname(path);
    byDir.set(dir, (byDir.get(dir) ?? new Set()).add(basename(path)));
  }
  const watchers: FSWatcher[] = [];
  for (const [dir, names] of byDir) {
    try {
      const watcher = watch(dir, { persistent: false }, (_event, name) => {
        if (name === null || names.has(String(name)) || String(name).startsWith('..')) onChange();
      });
      watcher.on('error', () => {});
      watchers.push(watcher);
    } catch {
      // A directory that cannot be watched still reloads on SIGHUP and POST /reload.
    }
  }
  return watchers;
}

/** The composition root: config → state → audit → metrics → listeners → admin. The only module that imports them all. */
export async function startGateway(options: StartOptions): Promise<Gateway> {
  const log = options.log ?? ((message: string) => process.stderr.write(`${message}\n`));
  const loaded =
    options.configText === undefined
      ? loadConfig(options.configPath)
      : { path: options.configPath, config: parseConfig(options.configText, options.configPath) };
  let config = loaded.config;
  const devPki = config.identity.devPki;
  if (devPki?.generateIfMissing && (await ensureDevPki(resolveConfigPath(devPki.dir), config.identity.trustDomain))) {
    log(`generated a development PKI in ${resolve(devPki.dir)} (never use it in production)`);
  }
  let current = await buildGatewayState(config, loaded.path);
  const audit = options.auditHub ?? buildAuditHub(config.audit, { log });
  audit.start();

  let draining = false;
  const tunnels = new LiveTunnels();
  const limiter = new IdentityLimiter();
  const runtime: ProxyRuntime = {
    tunnels,
    limiter,
    isDraining: () => draining,
    ...(options.faultProbe ? { faultProbe: options.faultProbe } : {}),
  };
  const listenerStats = new ListenerStats();
  const metrics = new GatewayMetrics(
    {
      activeTunnels: () => {
        const counts = new Map<string, number>([...current.listeners.keys()].map((name) => [name, 0]));
        for (const tunnel of tunnels.list()) counts.set(tunnel.listener, (counts.get(tunnel.listener) ?? 0) + 1);
        return counts;
      },
      auditSinks: () => audit.stats(),
      identityConnections: () => limiter.totalOpen(),
      certificateExpiry: () => {
        const now = Date.now();
        return [
          {
            role: 'gateway' as const,
            subject: current.serverCertificate.uris[0] ?? current.serverCertificate.subject,
            secondsLeft: (current.serverCertificate.notAfter.getTime() - now) / 1000,
          },
          ...current.trustBundle.anchors.map((a) => ({
            role: 'anchor' as const,
            subject: a.subject,
            secondsLeft: (a.notAfter.getTime() - now) / 1000,
          })),
        ];
      },
    },
    { defaultMetrics: options.processMetrics ?? true },
  );

  const forwarder = new HttpForwarder({ responseTimeoutMs: 60_000 });
  const getState = () => current;
  const listeners: TcpListener[] = [];
  const addresses = new Map<string, { host: string; port: number }>();
  let adminApp: Awaited<ReturnType<typeof startAdminServer>> | undefined;
  let watchers: FSWatcher[] = [];

  const shutdownParts = async () => {
    for (const watcher of watchers) watcher.close();
    await Promise.all(listeners.map((l) => l.stopAccepting()));
    await adminApp?.close();
    metrics.close();
    listenerStats.close();
  };

  let reloadChain: Promise<unknown> = Promise.resolve();
  const reloadOnce = async (): Promise<{ ok: boolean; error?: string }> => {
    try {
      const next = loadConfig(options.configPath);
      const change = listenerShapeChange(config, next.config);
      if (change) throw new GatewayError('EGW_RELOAD_FAILED', `${next.path}: ${change}`);
      const state = await buildGatewayState(next.config, next.path);
      current = state;
      config = next.config;
      metrics.reloaded(true);
      log(
        `reloaded ${next.path}: ${state.policy.rules.length} rules, ${state.trustBundle.anchors.length} trust anchors (audit, admin and workers settings apply at restart)`,
      );
      return { ok: true };
    } catch (error) {
      metrics.reloaded(false);
      const message = error instanceof Error ? error.message : String(error);
      log(`reload failed, keeping the running configuration: ${message}`);
      return { ok: false, error: isGatewayError(error) ? `${error.code}: ${message}` : message };
    }
  };

  const gateway: Gateway = {
    get config() {
      return config;
    },
    addresses,
    get adminAddress() {
      const address = adminApp?.server.address();
      return address && typeof address === 'object' ? { host: address.address, port: address.port } : undefined;
    },
    audit,
    metricsRegistry: metrics.registry,
    state: getState,
    reload() {
      const result = reloadChain.then(reloadOnce);
      reloadChain = result;
      return result;
    },
    async readiness(): Promise<Readiness> {
      const reasons: string[] = [];
      if (draining) reasons.push('draining');
      else if (listeners.length !== current.listeners.size || listeners.some((l) => !l.listening))
        reasons.push('not every listener is bound');
      // Expired, or expiring within admin.certExpiryWindow, makes the replica unready. Replicas
      // mounting one Secret go unready together; certExpiryWindow: 0 fails on expiry only.
      const now = Date.now();
      const horizon = now + config.admin.certExpiryWindow;
      const certificates = [
        { what: 'gateway certificate', notAfter: current.serverCertificate.notAfter },
        ...current.trustBundle.anchors.map((a) => ({ what: `trust anchor "${a.subject}"`, notAfter: a.notAfter })),
      ];
      for (const { what, notAfter } of certificates) {
        if (notAfter.getTime() < now) reasons.push(`${what} expired at ${notAfter.toISOString()}`);
        else if (notAfter.getTime() < horizon)
          reasons.push(`${what} expires at ${notAfter.toISOString()}, within admin.certExpiryWindow`);
      }
      return { ready: reasons.length === 0, reasons };
    },
    async metrics() {
      return { contentType: metrics.registry.contentType, body: await metrics.registry.metrics() };
    },
    async stats() {
      return {
        listeners: listenerStats.snapshot([...current.listeners.keys()]),
        activeTunnels: tunnels.size,
        audit: audit.stats(),
      };
    },
    async connections() {
      const now = Date.now();
      return tunnels.list().map((t) => ({
        connectionId: t.connectionId,
        listener: t.listener,
        identity: t.spiffeId,
        destination: t.destination,
        snat: t.snat ?? null,
        bytesFromClient: t.bytes.fromClient,
        bytesToClient: t.bytes.toClient,
        ageSeconds: Math.round((now - t.startedAt.getTime()) / 100) / 10,
      }));
    },
    async effectiveConfig() {
      return redact(config);
    },
    policyCheck: (input) => checkPolicy(current, input),
    close(drainMs = config.timeouts.drain) {
      closing ??= drainAndStop(drainMs);
      return closing;
    },
  };

  let closing: Promise<{ forcedClosed: number }> | undefined;
  async function drainAndStop(drainMs: number): Promise<{ forcedClosed: number }> {
    draining = true;
    await Promise.all(listeners.map((l) => l.stopAccepting()));
    const left = await Promise.all(listeners.map((l) => l.drain(drainMs)));
    const forcedClosed = left.reduce((a, b) => a + b, 0);
    metrics.drainForcedCloses(forcedClosed);
    // Let the pipes of force-closed tunnels publish their close records before the flush.
    await new Promise((r) => setTimeout(r, 50));
    await shutdownParts();
    await forwarder.close();
    await audit.close(5_000);
    return { forcedClosed };
  }

  try {
    for (const settings of current.listeners.values()) {
      const handler = settings.mode === 'connect' ? createConnectModeHandler({ forwarder }) : createTcpModeHandler();
      const listener = new TcpListener({
        name: settings.name,
        host: settings.host,
        port: settings.port,
        mode: settings.mode,
        maxConnections: settings.maxConnections,
        onConnection: createConnectionPipeline(getState, settings.name, handler, runtime),
      });
      await listener.listen();
      listeners.push(listener);
      addresses.set(settings.name, listener.address);
      log(
        `listener ${settings.name} (${settings.mode}) on ${listener.address.host}:${listener.address.port}${settings.snat ? ` snat ${settings.snat}` : ''}`,
      );
    }
    const adminListen = options.adminListen ?? config.admin.listen;
    if (adminListen !== 'off') {
      const index = adminListen.lastIndexOf(':');
      const token = adminToken(config, loaded.path);
      adminApp = await startAdminServer(gateway, {
        host: adminListen.slice(0, index).replace(/^\[|\]$/g, ''),
        port: Number(adminListen.slice(index + 1)),
        ...(token ? { token } : {}),
      });
      log(`admin API on http://${adminListen.slice(0, index)}:${gateway.adminAddress?.port}`);
    }
  } catch (error) {
    await shutdownParts();
    await audit.close(1000);
    throw isGatewayError(error) || !(error instanceof Error)
      ? error
      : new GatewayError('EGW_LISTEN_FAILED', `admin API: ${error.message}`, { cause: error });
  }

  if (config.admin.watch) {
    const id = config.identity;
    let timer: NodeJS.Timeout | undefined;
    watchers = watchFiles(
      [loaded.path, id.cert, id.key, id.trustAnchors].map((p) => resolveConfigPath(p)),
      () => {
        clearTimeout(timer);
        timer = setTimeout(() => void gateway.reload(), 500);
        timer.unref();
      },
    );
  }
  return gateway;
}
