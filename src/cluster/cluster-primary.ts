import { readFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import { adminListenAddress } from '../admin/admin-listen.ts';
import { startAdminServer } from '../admin/admin-server.ts';
import { buildGatewayState } from '../config/build-state.ts';
import { adminToken, loadConfig } from '../config/load-config.ts';
import { prepareDevPki } from '../devtools/dev-pki.ts';
import { exitAfter, handleSignals } from '../gateway/process-signals.ts';
import { clusterBackend } from './cluster-backend.ts';
import { WorkerPool } from './worker-pool.ts';

/** The primary waits this long past the drain deadline for workers that drain and flush, then exits anyway. */
const WORKER_EXIT_GRACE_MS = 20_000;

/**
 * `serve --workers N`: validates the configuration once, forks N workers that share the
 * listeners, serves the admin API for the whole group, and forwards reload (SIGHUP, POST /reload)
 * and drain (SIGTERM) to every worker.
 */
export async function runClusterPrimary(
  configPath: string,
  workers: number,
  log: (m: string) => void = (m) => process.stderr.write(`${m}\n`),
): Promise<void> {
  let pool: WorkerPool | undefined;
  let running: { stop: (signal: string) => Promise<void>; reload: () => void } | undefined;
  // Signals first: a SIGTERM during start-up must still stop the workers already forked.
  handleSignals({
    stop: async (signal) => {
      if (running) return running.stop(signal);
      log(`${signal} during start-up: stopping`);
      await pool?.stopAll();
      process.exit(0);
    },
    reload: () => running?.reload(),
  });
  const { config, path } = loadConfig(configPath);
  // Workers start from the text validated here (and after each good reload), not from whatever
  // the file holds when a replacement is forked: a broken edit must not become a crash loop.
  const configText = readFileSync(path, 'utf8');
  await prepareDevPki(config.identity, log);
  await buildGatewayState(config, path); // fail fast, before forking anything
  const token = adminToken(config, path);
  pool = new WorkerPool({ size: workers, configText, log });
  await pool.start();
  const backend = clusterBackend(pool, path);
  const address = adminListenAddress(config.admin.listen);
  const admin: FastifyInstance | undefined = address
    ? await startAdminServer(backend, { ...address, ...(token ? { token } : {}) })
    : undefined;
  const bound = admin?.server.address();
  const listeners = config.listeners.map((l) => `${l.name}@${l.listen}`).join(', ');
  log(
    `${workers} workers serving ${listeners}${bound && typeof bound === 'object' ? `; admin API on port ${bound.port}` : ''}`,
  );
  const group = pool;
  running = {
    reload: () => void backend.reload().then((r) => log(r.ok ? 'reloaded every worker' : `reload: ${r.error}`)),
    stop: async (signal) => {
      log(`${signal}: draining ${group.live().length} workers`);
      // Backstop: workers exit after their own drain; never wait for ever on one that hangs.
      exitAfter(config.timeouts.drain + WORKER_EXIT_GRACE_MS, log);
      await group.stopAll();
      await admin?.close();
      log('stopped');
      process.exit(0);
    },
  };
}
