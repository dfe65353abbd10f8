import type { FSWatcher } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import type { AdminBackend, Readiness } from '../admin/admin-backend.ts';
import { adminListenAddress } from '../admin/admin-listen.ts';
import { startAdminServer } from '../admin/admin-server.ts';
import { redactSecrets } from '../admin/redact-secrets.ts';
import type { AuditHub } from '../audit/audit-hub.ts';
import type { GatewayConfig } from '../config/config-schema.ts';
import { isGatewayError } from '../core/errors.ts';
import { crlStatuses } from '../identity/revocation.ts';
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
import type { Reload, ReloadResult, ReloadTrigger } from './reloader.ts';
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
  readonly reload: Reload;
  readonly log: (message: string) => void;
  /** The Workload API source, when it provides the identity: closed with the gateway. */
  readonly identitySource?: { close(): void };
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
  #binding: Promise<void> | undefined;

  constructor(parts: GatewayParts) {
    this.#parts = parts;
  }

  /** The configuration in effect (restart-only sections as started), also before the first state. */
  get config(): GatewayConfig {
    return this.#parts.store.config;
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

  /**
   * Binds every listener not bound yet; a failure leaves the ones bound so far to `abort()`. Without
   * a state yet (Workload API: no SVID) none is bound: no client may meet a gateway without an
   * identity, and reload() binds them on the first state. One bind runs at a time.
   */
  bindListeners(): Promise<void> {
    this.#binding ??= this.#bindMissing().finally(() => {
      this.#binding = undefined;
    });
    return this.#binding;
  }

  async #bindMissing(): Promise<void> {
    if (!this.#parts.store.latest) return;
    for (const listener of this.#parts.listeners) {
      if (listener.listening || this.#parts.runtime.isDraining()) continue;
      await listener.listen();
      // A drain that began while this socket was being bound has already stopped the others.
      if (this.#parts.runtime.isDraining()) {
        await listener.stopAccepting();
        continue;
      }
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

  /** Swaps in a new snapshot; the first one (after a start without a state) binds the listeners. */
  async reload(trigger: ReloadTrigger = 'file'): Promise<ReloadResult> {
    const result = await this.#parts.reload(trigger);
    if (!result.ok || this.#parts.listeners.every((l) => l.listening)) return result;
    try {
      await this.bindListeners();
      return result;
    } catch (error) {
      const message = isGatewayError(error) ? `${error.code}: ${error.message}` : String(error);
      this.#parts.log(`binding the listeners failed (retried at the next update or reload): ${message}`);
      return { ok: false, error: message };
    }
  }

  async readiness(): Promise<Readiness> {
    const { store, listeners } = this.#parts;
    const state = store.latest?.state;
    return readinessOf({
      draining: this.#parts.runtime.isDraining(),
      waitingFor: store.waitingFor,
      listenersBound: listeners.length === state?.listeners.size && listeners.every((l) => l.listening),
      certificates: state ? watchedCertificates(state) : [],
      crls: crlStatuses(state?.trustBundle.revocation),
      expiryWindowMs: store.config.admin.certExpiryWindow,
      nowMs: Date.now(),
    });
  }

  async metrics(): Promise<{ contentType: string; body: string }> {
    const { registry } = this.#parts.metrics;
    return { contentType: registry.contentType, body: await registry.metrics() };
  }

  async stats(): Promise<unknown> {
    return {
      listeners: this.#parts.listenerStats.snapshot(this.config.listeners.map((l) => l.name)),
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
      source: t.source ?? null,
      destination: t.destination,
      snat: t.snat ?? null,
      bytesFromClient: t.bytes.fromClient,
      bytesToClient: t.bytes.toClient,
      ageSeconds: Math.round((now - t.startedAt.getTime()) / 100) / 10,
    }));
  }

  /** The running configuration, secrets redacted, and which file changes wait for a restart. */
  async effectiveConfig(): Promise<unknown> {
    const pendingRestart = this.#parts.store.latest?.pendingRestart ?? [];
    return { ...(redactSecrets(this.config) as object), pendingRestart };
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
    this.#parts.identitySource?.close();
    await Promise.all(this.#parts.listeners.map((l) => l.stopAccepting()));
    await this.#admin?.close();
    this.#parts.metrics.close();
    this.#parts.listenerStats.close();
  }
}
