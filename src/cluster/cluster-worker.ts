import { AggregatorRegistry } from 'prom-client';
import { isGatewayError } from '../core/errors.ts';
import { exitAfter, handleSignals, SHUTDOWN_GRACE_MS } from '../gateway/process-signals.ts';
import { type Gateway, startGateway } from '../main.ts';
import type { PolicyCheckInput } from '../proxy/check-policy.ts';
import { type AdminReply, CONFIG_SNAPSHOT_ENV, isAdminRequest, type WorkerReady } from './admin-ipc.ts';

/**
 * A worker of `serve --workers N`: a full gateway sharing the listening sockets through
 * node:cluster, without its own admin API. It answers the primary's admin questions over IPC and
 * drains on SIGTERM (sent by the primary).
 */
export async function runClusterWorker(configPath: string): Promise<Gateway> {
  const snapshot = process.env[CONFIG_SNAPSHOT_ENV];
  const log = (m: string) => process.stderr.write(`[worker ${process.pid}] ${m}\n`);
  const gateway = await startGateway({
    configPath,
    ...(snapshot ? { configText: Buffer.from(snapshot, 'base64').toString('utf8') } : {}),
    adminListen: 'off',
    log,
  });
  // prom-client's AggregatorRegistry in the primary collects from these registries over IPC.
  AggregatorRegistry.setRegistries([gateway.metricsRegistry]);
  // Constructing one installs prom-client's worker-side IPC responder (it is lazy).
  new AggregatorRegistry();
  process.on('message', async (message: unknown) => {
    if (!isAdminRequest(message)) return;
    let reply: AdminReply;
    try {
      const result =
        message.op === 'policyCheck'
          ? await gateway.policyCheck(message.args as PolicyCheckInput)
          : await gateway[message.op]();
      reply = { type: 'egw-admin-reply', id: message.id, result };
    } catch (error) {
      reply = {
        type: 'egw-admin-reply',
        id: message.id,
        error: { ...(isGatewayError(error) ? { code: error.code } : {}), message: (error as Error).message },
      };
    }
    process.send?.(reply);
  });
  // Drains on the primary's SIGTERM only: Ctrl-C's SIGINT reaches the whole group and SIGHUP
  // reloads go through the primary, which asks every worker.
  handleSignals({
    stopSignals: ['SIGTERM'],
    stop: async () => {
      exitAfter(gateway.config.timeouts.drain + SHUTDOWN_GRACE_MS, log);
      const { forcedClosed } = await gateway.close();
      if (forcedClosed) log(`${forcedClosed} connections closed at the drain deadline`);
      process.exit(0);
    },
  });
  // Only now (not at the listeners' 'listening' events) does the primary count this worker as serving.
  process.send?.({ type: 'egw-worker-ready' } satisfies WorkerReady);
  return gateway;
}
