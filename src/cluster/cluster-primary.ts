import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry } from 'prom-client';
import type { AdminBackend } from '../admin/admin-backend.ts';
import { startAdminServer } from '../admin/admin-server.ts';
import { buildGatewayState } from '../config/build-state.ts';
import { adminToken, loadConfig, resolveConfigPath } from '../config/load-config.ts';
import { ERROR_CODES, type ErrorCode, GatewayError } from '../core/errors.ts';
import { ensureDevPki } from '../devtools/dev-pki.ts';
import type { PolicyCheckInput, PolicyCheckResult } from '../proxy/check-policy.ts';
import { type AdminOperation, isAdminReply } from './admin-ipc.ts';

const ASK_TIMEOUT_MS = 5_000;

/**
 * `serve --workers N`: validates the configuration once, forks N workers that share the
 * listeners, serves the admin API for the whole group (metrics aggregated with prom-client's
 * AggregatorRegistry), and forwards reload (SIGHUP, POST /reload) and drain (SIGTERM) to every worker.
 */
export async function runClusterPrimary(configPath: string, workers: number, log: (m: string) => void = (m) => process.stderr.write(`${m}\n`)): Promise<void> {
  const { config, path } = loadConfig(configPath);
  const devPki = config.identity.devPki;
  if (devPki?.generateIfMissing && (await ensureDevPki(resolveConfigPath(devPki.dir), config.identity.trustDomain))) {
    log(`generated a development PKI in ${devPki.dir} (never use it in production)`);
  }
  await buildGatewayState(config, path); // fail fast, before forking anything
  const token = adminToken(config, path);
  const aggregator = new AggregatorRegistry();
  let draining = false;
  let nextId = 1;
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();

  const fork = (): Worker => {
    const worker = cluster.fork();
    worker.on('message', (message: unknown) => {
      if (!isAdminReply(message)) return;
      const waiter = pending.get(message.id);
      if (!waiter) return;
      pending.delete(message.id);
      clearTimeout(waiter.timer);
      // Keep the worker's error code, so the admin API answers the same as a single process.
      const code = message.error?.code;
      if (message.error) waiter.reject(code && code in ERROR_CODES ? new GatewayError(code as ErrorCode, message.error.message) : new Error(message.error.message));
      else waiter.resolve(message.result);
    });
    return worker;
  };
  const live = () => Object.values(cluster.workers ?? {}).filter((w): w is Worker => w?.isConnected() === true);
  const ask = (worker: Worker, op: AdminOperation, args?: unknown): Promise<unknown> =>
    new Promise((resolve, reject) => {
      const id = nextId++;
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error(`worker ${worker.process.pid} did not answer ${op} within ${ASK_TIMEOUT_MS} ms`));
      }, ASK_TIMEOUT_MS);
      pending.set(id, { resolve, reject, timer });
      worker.send({ type: 'egw-admin', id, op, args });
    });
  const askAll = (op: AdminOperation, args?: unknown) => Promise.all(live().map(async (w) => ({ pid: w.process.pid, result: await ask(w, op, args) })));

  const online = new Promise<void>((resolve) => {
    let listening = 0;
    cluster.on('listening', () => {
      listening += 1;
      // Each worker binds every listener; the group is up once all of them did.
      if (listening === workers * config.listeners.length) resolve();
    });
  });
  for (let i = 0; i < workers; i++) fork();
  cluster.on('exit', (worker, code, signal) => {
    if (draining) return;
    log(`worker ${worker.process.pid} exited (${signal ?? code}); starting a replacement`);
    fork();
  });
  await online;

  const backend: AdminBackend = {
    async readiness() {
      if (draining) return { ready: false, reasons: ['draining'] };
      const answers = await askAll('readiness').catch((error: Error) => [{ pid: 0, result: { ready: false, reasons: [error.message] } }]);
      const reasons = answers.flatMap((a) => ((a.result as { reasons: string[] }).reasons ?? []).map((r) => `worker ${a.pid}: ${r}`));
      if (answers.length < workers) reasons.push(`${answers.length} of ${workers} workers running`);
      return { ready: reasons.length === 0, reasons };
    },
    async metrics() {
      return { contentType: aggregator.contentType, body: await aggregator.clusterMetrics() };
    },
    async stats() {
      return { workers: await askAll('stats') };
    },
    async connections() {
      return (await askAll('connections')).flatMap((a) => (a.result as Array<Record<string, unknown>>).map((c) => ({ worker: a.pid, ...c })));
    },
    async effectiveConfig() {
      const first = live()[0];
      if (!first) throw new GatewayError('EGW_DRAINING', 'no worker is running');
      return { workers, ...((await ask(first, 'effectiveConfig')) as object) };
    },
    async reload() {
      const answers = await askAll('reload');
      const failed = answers.filter((a) => !(a.result as { ok: boolean }).ok);
      return failed.length === 0 ? { ok: true, details: answers } : { ok: false, error: `${failed.length} of ${answers.length} workers failed to reload`, details: answers };
    },
    async policyCheck(input: PolicyCheckInput) {
      const first = live()[0];
      if (!first) throw new GatewayError('EGW_DRAINING', 'no worker is running');
      return (await ask(first, 'policyCheck', input)) as PolicyCheckResult;
    },
  };
  const adminListen = config.admin.listen;
  const admin =
    adminListen === 'off'
      ? undefined
      : await startAdminServer(backend, {
          host: adminListen.slice(0, adminListen.lastIndexOf(':')).replace(/^\[|\]$/g, ''),
          port: Number(adminListen.slice(adminListen.lastIndexOf(':') + 1)),
          ...(token ? { token } : {}),
        });
  const adminAddress = admin?.server.address();
  log(`${workers} workers serving ${config.listeners.map((l) => `${l.name}@${l.listen}`).join(', ')}${adminAddress && typeof adminAddress === 'object' ? `; admin API on port ${adminAddress.port}` : ''}`);

  process.on('SIGHUP', () => {
    void backend.reload().then((r) => log(r.ok ? 'reloaded every worker' : `reload: ${r.error}`));
  });
  const stop = async (signal: string) => {
    if (draining) return;
    draining = true;
    log(`${signal}: draining ${live().length} workers`);
    const exits = live().map((w) => new Promise((r) => w.once('exit', r)));
    for (const worker of live()) worker.process.kill('SIGTERM');
    await Promise.all(exits);
    await admin?.close();
    log('stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}
