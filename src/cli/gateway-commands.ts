import cluster from 'node:cluster';
import { runClusterPrimary } from '../cluster/cluster-primary.ts';
import { runClusterWorker } from '../cluster/cluster-worker.ts';
import { buildGatewayState } from '../config/build-state.ts';
import { loadConfig } from '../config/load-config.ts';
import { GatewayError } from '../core/errors.ts';
import { exitAfter, handleSignals, SHUTDOWN_GRACE_MS } from '../gateway/process-signals.ts';
import { startGateway } from '../main.ts';
import { checkPolicy } from '../proxy/check-policy.ts';

export async function runServe(configPath: string, options: { workers?: string } = {}): Promise<void> {
  if (cluster.isWorker) {
    await runClusterWorker(configPath);
    return;
  }
  const { config } = loadConfig(configPath);
  const workers = options.workers === undefined ? config.workers : Number(options.workers);
  if (!Number.isInteger(workers) || workers < 1 || workers > 64)
    throw new GatewayError(
      'EGW_CONFIG_INVALID',
      `--workers: expected a whole number from 1 to 64, got ${options.workers}`,
    );
  // As the config check says for `workers`: each worker would need its own agent streams.
  if (workers > 1 && config.identity.workloadApi)
    throw new GatewayError('EGW_CONFIG_INVALID', '--workers: must be 1 with identity.workloadApi');
  if (workers > 1) {
    await runClusterPrimary(configPath, workers);
    return;
  }
  // Signals are handled from before the start: the listeners are bound (and announced) before
  // startGateway returns, and Node's default for SIGUSR2 or SIGTERM would end the process.
  const early = handleSignalsEarly();
  const gateway = await startGateway({ configPath });
  const devPki = gateway.config.identity.devPki;
  if (devPki?.generateIfMissing) {
    const connect = [...gateway.config.listeners].find((l) => l.mode === 'connect');
    const address = connect ? gateway.addresses.get(connect.name) : undefined;
    if (address) {
      const dir = devPki.dir;
      process.stderr.write(
        [
          '',
          'Try it (in another terminal):',
          '  npx egress-gateway dev echo-server --listen 127.0.0.1:8080 &',
          `  curl -sS -p --proxy https://${address.host}:${address.port} --proxy-cacert ${dir}/root-cert.pem \\`,
          `       --proxy-cert ${dir}/workloads/bookinfo-productpage/cert.pem --proxy-key ${dir}/workloads/bookinfo-productpage/key.pem \\`,
          '       http://127.0.0.1:8080/',
          '  (the echo server reports the SNAT source address; with workloads/sm-apigw-a the gateway answers 403)',
          '',
        ].join('\n'),
      );
    }
  }
  early.serving(gateway);
}

type ServingGateway = Awaited<ReturnType<typeof startGateway>>;

/**
 * Installs the signal contract at once and binds it to the gateway when it is up: a stop or a
 * stats request that arrives during start-up is carried out as soon as the gateway serves.
 */
function handleSignalsEarly(): { serving(gateway: ServingGateway): void } {
  const log = (message: string) => process.stderr.write(`${message}\n`);
  let gateway: ServingGateway | undefined;
  let pending: { stop?: 'SIGTERM' | 'SIGINT'; report?: boolean } = {};
  const stop = async (running: ServingGateway, signal: 'SIGTERM' | 'SIGINT') => {
    log(`${signal}: closing listeners, draining tunnels (up to ${running.config.timeouts.drain} ms)`);
    exitAfter(running.config.timeouts.drain + SHUTDOWN_GRACE_MS, log);
    const { forcedClosed } = await running.close();
    log(`stopped${forcedClosed ? `; ${forcedClosed} connections closed at the drain deadline` : ''}`);
    process.exit(0);
  };
  const report = (running: ServingGateway) => log(`audit sinks: ${JSON.stringify(running.audit.stats())}`);
  handleSignals({
    stop: (signal) => {
      if (gateway) return stop(gateway, signal);
      pending.stop = signal;
    },
    reload: () => void gateway?.reload(),
    reopen: () => gateway?.audit.reopen(),
    report: () => {
      if (gateway) report(gateway);
      else pending.report = true;
    },
  });
  return {
    serving(running) {
      gateway = running;
      const asked = pending;
      pending = {};
      if (asked.report) report(running);
      if (asked.stop) void stop(running, asked.stop);
    },
  };
}

export async function runConfigValidate(configPath: string): Promise<void> {
  const { config, path } = loadConfig(configPath);
  const state = await buildGatewayState(config, path);
  process.stdout.write(
    `${path}: valid (${state.listeners.size} listeners, ${state.policy.rules.length} rules, ${state.trustBundle.anchors.length} trust anchors for ${state.trustBundle.trustDomain})\n`,
  );
}

export async function runPolicyCheck(opts: {
  config: string;
  spiffeId: string;
  listener?: string;
  dest?: string;
}): Promise<void> {
  const { config, path } = loadConfig(opts.config);
  const state = await buildGatewayState(config, path);
  const result = await checkPolicy(state, {
    spiffeId: opts.spiffeId,
    ...(opts.listener ? { listener: opts.listener } : {}),
    ...(opts.dest ? { dest: opts.dest } : {}),
  });
  process.stdout.write(`${result.summary}\n`);
  process.exitCode = result.allow ? 0 : 1;
}
