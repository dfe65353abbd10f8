import cluster, { type Worker } from 'node:cluster';
import { readFileSync } from 'node:fs';
import { AggregatorRegistry } from 'prom-client';
import type { AdminBackend, Readiness } from '../admin/admin-backend.ts';
import { startAdminServer } from '../admin/admin-server.ts';
import { buildGatewayState } from '../config/build-state.ts';
import { adminToken, loadConfig, resolveConfigPath } from '../config/load-config.ts';
import { ERROR_CODES, type ErrorCode, GatewayError } from '../core/errors.ts';
import { ensureDevPki } from '../devtools/dev-pki.ts';
import type { PolicyCheckInput, PolicyCheckResult } from '../proxy/check-policy.ts';
import { type AdminOperation, CONFIG_SNAPSHOT_ENV, isAdminReply } from './admin-ipc.ts';

const ASK_TIMEOUT_MS = 5_000;
/** Readiness must answer within a probe's timeout (typically 1–2 s), even if a worker hangs. */
const READINESS_TIMEOUT_MS = 1_000;
/** Replacement workers back off exponentially, so a worker that dies at once cannot spin the CPU. */
const RESTART_BACKOFF_MAX_MS = 30_000;
const STABLE_AFTER_MS = 60_000;

/**
 * `serve --workers N`: validates the configuration once, forks N workers that share the
 * listeners, serves the admin API for the whole group (metrics aggregated with prom-client's
 * AggregatorRegistry), and forwards reload (SIGHUP, POST /reload) and drain (SIGTERM) to every worker.
 */
export async function runClusterPrimary(
  configPath: string,
  workers: number,
  log: (m: string) => void = (m) => process.stderr.write(`${m}\n`),
): Promise<void> {
  // Signals first: a SIGTERM during start-up must still stop the workers already forked.
  let stop: ((signal: string) => Promise<void>) | undefined;
  const onStopSignal = (signal: string) => {
    if (stop) return void stop(signal);
    // Still starting: stop the workers forked so far and leave.
    log(`${signal} during start-up: stopping`);
    const starting = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined);
    for (const worker of starting) worker.process.kill('SIGTERM');
    void Promise.all(starting.map((w) => new Promise((r) => (w.isDead() ? r(null) : w.once('exit', r))))).then(() =>
      process.exit(0),
    );
  };
  process.on('SIGTERM', () => onStopSignal('SIGTERM'));
  process.on('SIGINT', () => onStopSignal('SIGINT'));
  process.on('SIGHUP', () => {}); // until the admin backend exists
  const { config, path } = loadConfig(configPath);
  // Workers start from the text validated here (and after each good reload), not from whatever
  // the file holds when a replacement is forked: a broken edit must not become a crash loop.
  let snapshot = readFileSync(path, 'utf8');
  const devPki = config.identity.devPki;
  if (devPki?.generateIfMissing && (await ensureDevPki(resolveConfigPath(devPki.dir), config.identity.trustDomain))) {
    log(`generated a development PKI in ${devPki.dir} (never use it in production)`);
  }
  await buildGatewayState(config, path); // fail fast, before forking anything
  const token = adminToken(config, path);
  const aggregator = new AggregatorRegistry();
  let draining = false;
  let nextId = 1;
  const pending = new Map<
    number,
    { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }
  >();

  const serving = new Set<number>();
  const fork = (): Worker => {
    const worker = cluster.fork({ [CONFIG_SNAPSHOT_ENV]: Buffer.from(snapshot).toString('base64') });
    worker.on('message', (message: unknown) => {
      if (!isAdminReply(message)) return;
      const waiter = pending.get(message.id);
      if (!waiter) return;
      pending.delete(message.id);
      clearTimeout(waiter.timer);
      // Keep the worker's error code, so the admin API answers the same as a single process.
      const code = message.error?.code;
      if (message.error)
        waiter.reject(
          code && code in ERROR_CODES
            ? new GatewayError(code as ErrorCode, message.error.message)
            : new Error(message.error.message),
        );
      else waiter.resolve(message.result);
    });
    return worker;
  };
  const live = () => Object.values(cluster.workers ?? {}).filter((w): w is Worker => w?.isConnected() === true);
  const ask = (worker: Worker, op: AdminOperation, args?: unknown, timeoutMs = ASK_TIMEOUT_MS): Promise<unknown> =>
    new Promise((resolve, reject) => {
      const id = nextId++;
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error(`worker ${worker.process.pid} did not answer ${op} within ${timeoutMs} ms`));
      }, timeoutMs);
      pending.set(id, { resolve, reject, timer });
      worker.send({ type: 'egw-admin', id, op, args });
    });
  const askAll = (op: AdminOperation, args?: unknown) =>
    Promise.all(live().map(async (w) => ({ pid: w.process.pid, result: await ask(w, op, args) })));

  let started = false;
  const online = new Promise<void>((resolve, reject) => {
    const listening = new Map<number, number>();
    cluster.on('listening', (worker) => {
      const count = (listening.get(worker.id) ?? 0) + 1;
      listening.set(worker.id, count);
      // Each worker binds every listener; it serves once all of them are bound.
      if (count === config.listeners.length) serving.add(worker.id);
      if (!started && serving.size === workers) {
        started = true;
        resolve();
      }
    });
    cluster.on('exit', (worker, code, signal) => {
      if (!started)
        reject(
          new GatewayError(
            'EGW_LISTEN_FAILED',
            `worker ${worker.process.pid} exited during start-up (${signal ?? code}); see its output above`,
          ),
        );
    });
  });
  let crashes = 0;
  let lastCrashAt = 0;
  cluster.on('exit', (worker, code, signal) => {
    serving.delete(worker.id);
    if (draining || !started) return;
    if (Date.now() - lastCrashAt > STABLE_AFTER_MS) crashes = 0;
    lastCrashAt = Date.now();
    const delay = Math.min(RESTART_BACKOFF_MAX_MS, 250 * 2 ** crashes);
    crashes += 1;
    log(`worker ${worker.process.pid} exited (${signal ?? code}); starting a replacement in ${delay} ms`);
    setTimeout(() => {
      if (!draining) fork();
    }, delay).unref();
  });
  for (let i = 0; i < workers; i++) fork();
  try {
    await online;
  } catch (error) {
    draining = true;
    for (const worker of live()) worker.process.kill('SIGTERM');
    throw error;
  }

  const backend: AdminBackend = {
    async readiness() {
      if (draining) return { ready: false, reasons: ['draining'] };
      // Only workers that serve are asked; one starting up must not stall the probe.
      const answers = await Promise.all(
        live()
          .filter((w) => serving.has(w.id))
          .map(async (w) => ({
            pid: w.process.pid,
            result: (await ask(w, 'readiness', undefined, READINESS_TIMEOUT_MS).catch((error: Error) => ({
              ready: false,
              reasons: [error.message],
            }))) as Readiness,
          })),
      );
      const reasons = answers.flatMap((a) => a.result.reasons.map((r) => `worker ${a.pid}: ${r}`));
      if (answers.length < workers) reasons.push(`${answers.length} of ${workers} workers serving`);
      return { ready: reasons.length === 0, reasons };
    },
    async metrics() {
      return { contentType: aggregator.contentType, body: await aggregator.clusterMetrics() };
    },
    async stats() {
      return { workers: await askAll('stats') };
    },
    async connections() {
      return (await askAll('connections')).flatMap((a) =>
        (a.result as Array<Record<string, unknown>>).map((c) => ({ worker: a.pid, ...c })),
      );
    },
    async effectiveConfig() {
      const first = live()[0];
      if (!first) throw new GatewayError('EGW_DRAINING', 'no worker is running');
      return { workers, ...((await ask(first, 'effectiveConfig')) as object) };
    },
    async reload() {
      const text = readFileSync(path, 'utf8');
      const answers = await askAll('reload');
      const failed = answers.filter((a) => !(a.result as { ok: boolean }).ok);
      if (failed.length > 0)
        return { ok: false, error: `${failed.length} of ${answers.length} workers failed to reload`, details: answers };
      snapshot = text; // replacements start from what the workers now run
      return { ok: true, details: answers };
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
  log(
    `${workers} workers serving ${config.listeners.map((l) => `${l.name}@${l.listen}`).join(', ')}${adminAddress && typeof adminAddress === 'object' ? `; admin API on port ${adminAddress.port}` : ''}`,
  );

  process.removeAllListeners('SIGHUP');
  process.on('SIGHUP', () => {
    void backend.reload().then((r) => log(r.ok ? 'reloaded every worker' : `reload: ${r.error}`));
  });
  stop = async (signal: string) => {
    if (draining) return;
    draining = true;
    log(`${signal}: draining ${live().length} workers`);
    const exits = live().map((w) => new Promise((r) => w.once('exit', r)));
    for (const worker of live()) worker.process.kill('SIGTERM');
    // Backstop: workers exit after their own drain; never wait for ever on one that hangs.
    setTimeout(() => process.exit(1), config.timeouts.drain + 20_000).unref();
    await Promise.all(exits);
    await admin?.close();
    log('stopped');
    process.exit(0);
  };
}
