import { readFileSync } from 'node:fs';
import { AggregatorRegistry } from 'prom-client';
import type { AdminBackend, Readiness } from '../admin/admin-backend.ts';
import { GatewayError } from '../core/errors.ts';
import type { PolicyCheckInput, PolicyCheckResult } from '../proxy/check-policy.ts';
import type { WorkerPool } from './worker-pool.ts';

/** Readiness must answer within a probe's timeout (typically 1–2 s), even if a worker hangs. */
const READINESS_TIMEOUT_MS = 1_000;

/**
 * The admin API of a cluster: every answer is asked of the workers and merged (metrics summed by
 * prom-client's AggregatorRegistry), so one process or N answer the same questions the same way.
 */
export function clusterBackend(pool: WorkerPool, configPath: string): AdminBackend {
  const aggregator = new AggregatorRegistry();
  const first = () => {
    const worker = pool.live()[0];
    if (!worker) throw new GatewayError('EGW_DRAINING', 'no worker is running');
    return worker;
  };
  return {
    readiness: () => clusterReadiness(pool),
    async metrics() {
      return { contentType: aggregator.contentType, body: await aggregator.clusterMetrics() };
    },
    async stats() {
      return { workers: await pool.askAll('stats') };
    },
    async connections() {
      return (await pool.askAll('connections')).flatMap((a) =>
        (a.result as Array<Record<string, unknown>>).map((c) => ({ worker: a.pid, ...c })),
      );
    },
    async effectiveConfig() {
      // The worker count in effect is the primary's (serve --workers may override the file).
      return { ...((await pool.ask(first(), 'effectiveConfig')) as object), workers: pool.size };
    },
    async reload() {
      const text = readFileSync(configPath, 'utf8');
      const answers = await pool.askAll('reload');
      const failed = answers.filter((a) => !(a.result as { ok: boolean }).ok);
      if (failed.length > 0)
        return { ok: false, error: `${failed.length} of ${answers.length} workers failed to reload`, details: answers };
      pool.configText = text; // replacements start from what the workers now run
      return { ok: true, details: answers };
    },
    async policyCheck(input: PolicyCheckInput) {
      return (await pool.ask(first(), 'policyCheck', input)) as PolicyCheckResult;
    },
  };
}

async function clusterReadiness(pool: WorkerPool): Promise<Readiness> {
  if (pool.stopping) return { ready: false, reasons: ['draining'] };
  // Only workers that serve are asked; one starting up must not stall the probe.
  const answers = await Promise.all(
    pool.serving().map(async (w) => ({
      pid: w.process.pid,
      result: (await pool.ask(w, 'readiness', undefined, READINESS_TIMEOUT_MS).catch((error: Error) => ({
        ready: false,
        reasons: [error.message],
      }))) as Readiness,
    })),
  );
  const reasons = answers.flatMap((a) => a.result.reasons.map((r) => `worker ${a.pid}: ${r}`));
  if (answers.length < pool.size) reasons.push(`${answers.length} of ${pool.size} workers serving`);
  return { ready: reasons.length === 0, reasons };
}
