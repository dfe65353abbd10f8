import { AggregatorRegistry } from 'prom-client';
import { isGatewayError } from '../core/errors.ts';
import { type Gateway, startGateway } from '../main.ts';
import type { PolicyCheckInput } from '../proxy/check-policy.ts';
import { type AdminReply, CONFIG_SNAPSHOT_ENV, isAdminRequest } from './admin-ipc.ts';

/**
 * A worker of `serve --workers N`: a full gateway sharing the listening sockets through
 * node:cluster, without its own admin API. It answers the primary's admin questions over IPC and
 * drains on SIGTERM (sent by the primary).
 */
export async function runClusterWorker(configPath: string): Promise<Gateway> {
  const snapshot = process.env[CONFIG_SNAPSHOT_ENV];
  const gateway = await startGateway({
    configPath,
    ...(snapshot ? { configText: Buffer.from(snapshot, 'base64').toString('utf8') } : {}),
    adminListen: 'off',
    log: (m) => process.stderr.write(`[worker ${process.pid}] ${m}\n`),
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
  let stopping = false;
  process.on('SIGTERM', async () => {
    if (stopping) return;
    stopping = true;
    setTimeout(() => process.exit(1), gateway.config.timeouts.drain + 15_000).unref();
    const { forcedClosed } = await gateway.close();
    if (forcedClosed)
      process.stderr.write(`[worker ${process.pid}] ${forcedClosed} connections closed at the drain deadline\n`);
    process.exit(0);
  });
  // The primary handles SIGINT/SIGHUP for the whole group.
  process.on('SIGINT', () => {});
  process.on('SIGHUP', () => {});
  return gateway;
}
