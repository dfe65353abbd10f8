import cluster from 'node:cluster';
import { runClusterPrimary } from '../cluster/cluster-primary.ts';
import { runClusterWorker } from '../cluster/cluster-worker.ts';
import { buildGatewayState } from '../config/build-state.ts';
import { loadConfig } from '../config/load-config.ts';
import { GatewayError } from '../core/errors.ts';
import { startGateway } from '../main.ts';
import { checkPolicy } from '../proxy/check-policy.ts';

export async function runServe(configPath: string, options: { workers?: string } = {}): Promise<void> {
  if (cluster.isWorker) {
    await runClusterWorker(configPath);
    return;
  }
  const workers = options.workers === undefined ? loadConfig(configPath).config.workers : Number(options.workers);
  if (!Number.isInteger(workers) || workers < 1 || workers > 64)
    throw new GatewayError(
      'EGW_CONFIG_INVALID',
      `--workers: expected a whole number from 1 to 64, got ${options.workers}`,
    );
  if (workers > 1) {
    await runClusterPrimary(configPath, workers);
    return;
  }
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
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(
      `${signal}: closing listeners, draining tunnels (up to ${gateway.config.timeouts.drain} ms)\n`,
    );
    // Backstop: whatever hangs (a sink, a socket), the process ends after drain + flush time.
    setTimeout(() => {
      process.stderr.write('shutdown did not finish in time; exiting\n');
      process.exit(1);
    }, gateway.config.timeouts.drain + 15_000).unref();
    const { forcedClosed } = await gateway.close();
    process.stderr.write(
      `stopped${forcedClosed ? `; ${forcedClosed} connections closed at the drain deadline` : ''}\n`,
    );
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGHUP', () => void gateway.reload());
  process.on('SIGUSR1', () => gateway.audit.reopen());
  process.on('SIGUSR2', () => process.stderr.write(`audit sinks: ${JSON.stringify(gateway.audit.stats())}\n`));
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
