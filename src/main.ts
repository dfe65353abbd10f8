import { resolve } from 'node:path';
import type { AuditHub } from './audit/audit-hub.ts';
import { buildAuditHub } from './audit/build-audit-hub.ts';
import { buildGatewayState } from './config/build-state.ts';
import type { GatewayConfig } from './config/config-schema.ts';
import { loadConfig, resolveConfigPath } from './config/load-config.ts';
import { ensureDevPki } from './devtools/dev-pki.ts';
import { TcpListener } from './listener/tcp-listener.ts';
import { createConnectModeHandler } from './proxy/connect-mode.ts';
import type { GatewayState } from './proxy/gateway-state.ts';
import { createConnectionPipeline } from './proxy/handle-connection.ts';
import { createTcpModeHandler } from './proxy/tcp-mode.ts';
import { HttpForwarder } from './upstream/http-forwarder.ts';

export interface StartOptions {
  readonly configPath: string;
  /** Where operational messages go (audit records go to the configured sinks). */
  readonly log?: (message: string) => void;
  /** Replaces the configured sinks (tests). */
  readonly auditHub?: AuditHub;
}

export interface Gateway {
  readonly config: GatewayConfig;
  /** Bound addresses by listener name (resolves port 0). */
  readonly addresses: ReadonlyMap<string, { host: string; port: number }>;
  readonly audit: AuditHub;
  state(): GatewayState;
  /** Re-reads the config file; on any error the running state is kept and the error thrown. */
  reload(): Promise<void>;
  /** Stops accepting, lets open tunnels finish up to `drainMs`, then closes them; flushes audit. */
  close(drainMs?: number): Promise<{ forcedClosed: number }>;
}

/** The composition root: config → state → audit → listeners. The only module that imports them all. */
export async function startGateway(options: StartOptions): Promise<Gateway> {
  const log = options.log ?? ((message: string) => process.stderr.write(`${message}\n`));
  const { config, path } = loadConfig(options.configPath);
  const devPki = config.identity.devPki;
  if (devPki?.generateIfMissing && (await ensureDevPki(resolveConfigPath(devPki.dir), config.identity.trustDomain))) {
    log(`generated a development PKI in ${resolve(devPki.dir)} (never use it in production)`);
  }
  let current = await buildGatewayState(config, path);
  const audit = options.auditHub ?? buildAuditHub(config.audit);
  audit.start();
  const forwarder = new HttpForwarder({ connectTimeoutMs: current.timeouts.connectMs, responseTimeoutMs: 60_000 });
  const getState = () => current;
  const listeners: TcpListener[] = [];
  const addresses = new Map<string, { host: string; port: number }>();
  try {
    for (const settings of current.listeners.values()) {
      const handler =
        settings.mode === 'connect'
          ? createConnectModeHandler({ forwarder, maxHeaderBytes: current.maxHeaderBytes, requestHeadTimeoutMs: current.timeouts.requestHeadMs })
          : createTcpModeHandler();
      const listener = new TcpListener({
        name: settings.name,
        host: settings.host,
        port: settings.port,
        maxConnections: settings.maxConnections,
        onConnection: createConnectionPipeline(getState, settings.name, handler),
      });
      await listener.listen();
      listeners.push(listener);
      addresses.set(settings.name, listener.address);
      log(`listener ${settings.name} (${settings.mode}) on ${listener.address.host}:${listener.address.port}${settings.snat ? ` snat ${settings.snat}` : ''}`);
    }
  } catch (error) {
    await Promise.all(listeners.map((l) => l.stopAccepting()));
    await audit.close(1000);
    throw error;
  }
  const drainDefault = config.timeouts.drain;
  return {
    config,
    addresses,
    audit,
    state: getState,
    async reload() {
      const next = loadConfig(options.configPath);
      const state = await buildGatewayState(next.config, next.path);
      current = state;
      log(`reloaded ${next.path}: ${state.policy.rules.length} rules`);
    },
    async close(drainMs = drainDefault) {
      await Promise.all(listeners.map((l) => l.stopAccepting()));
      const left = await Promise.all(listeners.map((l) => l.drain(drainMs)));
      await forwarder.close();
      await audit.close(5_000);
      return { forcedClosed: left.reduce((a, b) => a + b, 0) };
    },
  };
}
