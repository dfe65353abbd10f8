import { buildGatewayState, splitHostPort } from '../config/build-state.ts';
import { loadConfig } from '../config/load-config.ts';
import { GatewayError } from '../core/errors.ts';
import { parseSpiffeId } from '../identity/spiffe-id.ts';
import { startGateway } from '../main.ts';
import { decide } from '../policy/decide.ts';
import { authorizeDestination } from '../proxy/authorize-destination.ts';
import { failWith } from './report.ts';

export async function runServe(configPath: string): Promise<void> {
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
    process.stderr.write(`${signal}: closing listeners, draining tunnels (up to ${gateway.config.timeouts.drain} ms)\n`);
    const { forcedClosed } = await gateway.close();
    process.stderr.write(`stopped${forcedClosed ? `; ${forcedClosed} connections closed at the drain deadline` : ''}\n`);
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGHUP', () => {
    gateway.reload().catch((error) => process.stderr.write(`reload failed, keeping the running configuration: ${(error as Error).message}\n`));
  });
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

export async function runPolicyCheck(opts: { config: string; spiffeId: string; listener?: string; dest?: string }): Promise<void> {
  const { config, path } = loadConfig(opts.config);
  const state = await buildGatewayState(config, path);
  const listenerName = opts.listener ?? config.listeners[0]?.name ?? '';
  const listener = state.listeners.get(listenerName);
  if (!listener) failWith(new GatewayError('EGW_CONFIG_INVALID', `--listener: no listener is named ${JSON.stringify(listenerName)}`));
  const id = parseSpiffeId(opts.spiffeId);
  let allow: boolean;
  let line: string;
  if (listener.mode === 'connect') {
    if (!opts.dest) failWith(new GatewayError('EGW_PROXY_BAD_REQUEST', `--dest host:port is required for connect-mode listener ${listener.name}`));
    const { host, port } = splitHostPort(opts.dest);
    const result = await authorizeDestination(state, listener, id, host, port);
    allow = result.allow;
    const rule = result.decision?.rule?.name ?? '(default deny)';
    line = result.allow
      ? `ALLOW listener=${listener.name} rule=${rule} ip=${result.ip}${result.snat ? ` snat=${result.snat}` : ''}: ${result.decision.reason}`
      : `DENY listener=${listener.name} rule=${rule} status=${result.status} code=${result.code}: ${result.reason}`;
  } else {
    const upstream = listener.upstream;
    const decision = decide(state.policy, { listener: listener.name, identity: id, destination: upstream ? { host: upstream.host, port: upstream.port } : {} });
    allow = decision.allow;
    line = `${allow ? 'ALLOW' : 'DENY'} listener=${listener.name} rule=${decision.rule?.name ?? '(default deny)'}: ${decision.reason}`;
  }
  process.stdout.write(`${line}\n`);
  process.exitCode = allow ? 0 : 1;
}
