import type { FSWatcher } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import type { AdminBackend, Readiness } from '../admin/admin-backend.ts';
import { adminListenAddress } from '../admin/admin-listen.ts';
import { startAdminServer } from '../admin/admin-server.ts';
import { redactSecrets } from '../admin/redact-secrets.ts';
import type { AuditHub } from '../audit/audit-hub.ts';
import type { GatewayConfig } from '../config/config-schema.ts';
import type { TcpListener } from '../listener/tcp-listener.ts';
import type { GatewayMetrics } from '../metrics/gateway-metrics.ts';
import type { ListenerStats } from '../metrics/listener-stats.ts';
import { checkPolicy, type PolicyCheckInput, type PolicyCheckResult } from '../proxy/check-policy.ts';
import type { GatewayState } from '../proxy/gateway-state.ts';
import type { HttpForwarder } from '../upstream/http-forwarder.ts';
import { watchedCertificates } from './certificate-list.ts';
import { waitForCloseRecords } from './drain.ts';
import type { GatewaySnapshot } from './gateway-snapshot.ts';
import type { DrainableRuntime } from './proxy-runtime.ts';
import { readinessOf } from './readiness.ts';
import type { ReloadResult } from './reloader.ts';
import type { SnapshotStore } from './snapshot-store.ts';

/** The parts `src/main.ts` composes; the gateway owns their lifecycle from here on. */
export interface GatewayParts {
  readonly store: SnapshotStore;
  readonly runtime: DrainableRuntime;
  readonly audit: AuditHub;
  readonly metrics: GatewayMetrics;
  readonly listenerStats: ListenerStats;
  readonly listeners: readonly TcpListener[];
  readonly forwarder: HttpForwarder;
  readonly reload: () => Promise<ReloadResult>;
  readonly log: (message: string) => void;
}

/**
 * A running gateway: one current snapshot (config + state) in `store`, the listeners that read it
 * for every new connection, and the admin backend answering from it. The only mutable thing about
 * the configuration is which snapshot is current.
 */
export class Gateway implements AdminBackend {
  readonly #parts: GatewayParts;
  readonly addresses = new Map<string, { host: string; port: number }>();
  #admin: FastifyInstance | undefined;
  #watchers: FSWatcher[] = [];
  #closing: Promise<{ forcedClosed: number }> | undefined;

  constructor(parts: GatewayParts) {
    this.#parts = parts;
  }

  /** The configuration in effect (restart-only sections as started). */
  get config(): GatewayConfig {
    return this.#parts.store.current.config;
  }

  snapshot(): GatewaySnapshot {
    return this.#parts.store.current;
  }

  state(): GatewayState {
    return this.#parts.store.current.state;
  }

  get audit(): AuditHub {
    return this.#parts.audit;
  }

  get metricsRegistry(): GatewayMetrics['registry'] {
    return this.#parts.metrics.registry;
  }

  /** The admin API address, when it listens. */
  get adminAddress(): { host: string; port: number } | undefined {
    const address = this.#admin?.server.address();
    return address && typeof address === 'object' ? { host: address.address, port: address.port } : undefined;
  }

  /** Binds every listener; a failure leaves the ones bound so far to `abort()`. */
  async bindListeners(): Promise<void> {
    for (const listener of this.#parts.listeners) {
      await listener.listen();
      this.addresses.set(listener.name, listener.address);
      const settings = this.state().listeners.get(listener.name);
      const snat = settings?.snat ? ` snat ${settings.snat.addresses.join(',')}` : '';
      const report = settings?.enforcement === 'report' ? ' enforcement report (would-deny let through)' : '';
      this.#parts.log(
        `listener ${listener.name} (${settings?.mode}) on ${listener.address.host}:${listener.address.port}${snat}${report}`,
      );
    }
  }

  /** Serves the admin API on `listen` ("off": not at all). */
  async serveAdmin(listen: string, token: string | undefined): Promise<void> {
    const address = adminListenAddress(listen);
    if (!address) return;
    this.#admin = await startAdminServer(this, { ...address, ...(token ? { token } : {}) });
    this.#parts.log(`admin API on http://${listen.slice(0, listen.lastIndexOf(':'))}:${this.adminAddress?.port}`);
  }

  /** Keeps the file watchers so that close() stops them. */
  setWatchers(watchers: FSWatcher[]): void {
    this.#watchers = watchers;
  }

  reload(): Promise<ReloadResult> {
    return this.#parts.reload();
  }

  async readiness(): Promise<Readiness> {
    const { config, state } = this.snapshot();
    const listeners = this.#parts.listeners;
    return readinessOf({
      draining: this.#parts.runtime.isDraining(),
      listenersBound: listeners.length === state.listeners.size && listeners.every((l) => l.listening),
      certificates: watchedCertificates(state),
      expiryWindowMs: config.admin.certExpiryWindow,
      nowMs: Date.now(),
    });
  }

  async metrics(): Promise<{ contentType: string; body: string }> {
    const { registry } = this.#parts.metrics;
    return { contentType: registry.contentType, body: await registry.metrics() };
  }

  async stats(): Promise<unknown> {
    return {
      listeners: this.#parts.listenerStats.snapshot([...this.state().listeners.keys()]),
      activeTunnels: this.#parts.runtime.tunnels.size,
      audit: this.#parts.audit.stats(),
    };
  }

  async connections(): Promise<unknown> {
    const now = Date.now();
    return this.#parts.runtime.tunnels.list().map((t) => ({
      connectionId: t.connectionId,
      listener: t.listener,
      identity: t.spiffeId,
      destination: t.destination,
      snat: t.snat ?? null,
      bytesFromClient: t.bytes.fromClient,
      bytesToClient: t.bytes.toClient,
      ageSeconds: Math.round((now - t.startedAt.getTime()) / 100) / 10,
    }));
  }

  /** The running configuration, secrets redacted, and which file changes wait for a restart. */
  async effectiveConfig(): Promise<unknown> {
    const { config, pendingRestart } = this.snapshot();
    return { ...(redactSecrets(config) as object), pendingRestart };
  }

  policyCheck(input: PolicyCheckInput): Promise<PolicyCheckResult> {
    return checkPolicy(this.state(), input);
  }

  /** Stops accepting, lets open tunnels finish up to `drainMs`, then closes them; flushes audit. */
  close(drainMs = this.config.timeouts.drain): Promise<{ forcedClosed: number }> {
    this.#closing ??= this.#drainAndStop(drainMs);
    return this.#closing;
  }

  async #drainAndStop(drainMs: number): Promise<{ forcedClosed: number }> {
    const { runtime, listeners, metrics, forwarder, audit } = this.#parts;
    runtime.startDraining();
    await Promise.all(listeners.map((l) => l.stopAccepting()));
    const left = await Promise.all(listeners.map((l) => l.drain(drainMs)));
    const forcedClosed = left.reduce((a, b) => a + b, 0);
    metrics.drainForcedCloses(forcedClosed);
    // The force-closed tunnels publish their close records as their pipes end; the flush below must include them.
    await waitForCloseRecords(runtime.tunnels);
    await this.#stopParts();
    await forwarder.close();
    await audit.close(5_000);
    return { forcedClosed };
  }

  /** Undoes a start that failed half-way (a listener or the admin API could not bind). */
  async abort(): Promise<void> {
    await this.#stopParts();
    await this.#parts.audit.close(1000);
  }

  async #stopParts(): Promise<void> {
    for (const watcher of this.#watchers) watcher.close();
    await Promise.all(this.#parts.listeners.map((l) => l.stopAccepting()));
    await this.#admin?.close();
    this.#parts.metrics.close();
    this.#parts.listenerStats.close();
  }
}
