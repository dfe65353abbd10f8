import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from '../test/helpers/loopback-ports.ts';
import { writeTestConfig } from '../test/helpers/test-gateway.ts';
import type { TestPki, WrittenLeaf } from '../test/helpers/test-pki.ts';

/** One proxy under test: its process group, and a listener in front of each bench upstream. */
export interface Subject {
  readonly name: string;
  readonly pgid: number;
  /** TLS listeners relaying to the discard, echo and web upstreams. */
  readonly ports: { readonly discard: number; readonly echo: number; readonly web: number };
  /** An HTTP CONNECT listener (the gateway only). */
  readonly connectPort?: number;
  stop(): void;
}

export interface Upstreams {
  readonly discard: number;
  readonly echo: number;
  readonly web: number;
}

const repo = new URL('..', import.meta.url).pathname;
/** The Node that runs the subjects: BENCH_NODE (e.g. a Node 24 from the npm registry) or this one. */
export const subjectNode = process.env.BENCH_NODE ?? process.execPath;
const NOFILE = 65_536;
/**
 * Each subject dials its upstreams from a source address of its own: tens of thousands of
 * connections a run leave their ports in TIME_WAIT, and one subject must not starve the next.
 */
export const SNAT = {
  gateway: '127.0.0.2',
  gatewayBefore: '127.0.0.3',
  nginx: '127.0.0.4',
  relay: '127.0.0.5',
  workers: '127.0.0.6',
} as const;

/** Spawns detached (own process group) with a raised descriptor limit: 10k tunnels need 20k+. */
export function spawnGroup(command: string, args: readonly string[]): ChildProcess {
  return spawn('sh', ['-c', `ulimit -n ${NOFILE} 2>/dev/null || true; exec "$0" "$@"`, command, ...args], {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

export function waitForOutput(child: ChildProcess, pattern: RegExp, timeoutMs = 60_000): Promise<RegExpExecArray> {
  let text = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${pattern} within ${timeoutMs} ms in: ${text}`)), timeoutMs);
    const onData = (chunk: Buffer) => {
      text += chunk;
      const match = pattern.exec(text);
      if (match) {
        clearTimeout(timer);
        resolve(match);
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => reject(new Error(`exited (${code}) before ${pattern}: ${text}`)));
  });
}

function killGroup(child: ChildProcess): void {
  try {
    process.kill(-(child.pid as number), 'SIGKILL');
  } catch {
    // already gone
  }
}

/**
 * Compiles `dir`'s src/ into dist/ (tsc). bin/egress-gateway.js runs src/ through tsx when dist/
 * is older than src/, with source-mapped stack traces and a loader thread: not what ships, so a
 * bench must never measure it.
 */
export function buildDist(dir: string): void {
  const tsc = join(dir, 'node_modules/typescript/bin/tsc');
  const run = spawnSync(process.execPath, [tsc, '-p', join(dir, 'tsconfig.build.json')], { stdio: 'inherit' });
  if (run.status !== 0) throw new Error(`tsc in ${dir} failed (${run.status ?? run.signal})`);
}

export async function startGateway(
  pki: TestPki,
  up: Upstreams,
  dir: string,
  options: { workers?: number; name?: string; repoDir?: string; snat?: string } = {},
): Promise<Subject> {
  const [discard, echo, web, connectPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const snat = options.snat ?? SNAT.gateway;
  const tcp = (name: string, port: number, upstream: number) => ({
    name,
    listen: `127.0.0.1:${port}`,
    mode: 'tcp',
    upstream: `127.0.0.1:${upstream}`,
    snat,
    maxConnections: 30_000,
  });
  const workers = options.workers ?? 1;
  const configPath = writeTestConfig(
    pki,
    {
      listeners: [
        tcp('discard', discard, up.discard),
        tcp('echo', echo, up.echo),
        tcp('web', web, up.web),
        {
          name: 'egress',
          listen: `127.0.0.1:${connectPort}`,
          mode: 'connect',
          snat,
          maxConnections: 30_000,
        },
      ],
      rules: [{ name: 'bench', from: { namespaces: ['bookinfo'] }, to: { cidrs: ['127.0.0.0/8'] }, action: 'allow' }],
      limits: { maxConnectionsPerIdentity: 0, maxPreHandshakeSocketsPerSource: 0 },
      audit: { sinks: [{ type: 'file', path: join(dir, `audit-${workers}.jsonl`), format: 'ecs' }] },
      admin: { listen: 'off', watch: false },
      workers,
    },
    { anchors: pki.bundlePath },
  );
  const bin = join(options.repoDir ?? repo, 'bin/egress-gateway.js');
  const child = spawnGroup(subjectNode, [bin, 'serve', '--config', configPath]);
  await waitForOutput(child, workers > 1 ? /\d+ workers serving/ : /listener egress/);
  return {
    name: options.name ?? (workers > 1 ? `gateway-${workers}w` : 'gateway'),
    pgid: child.pid as number,
    ports: { discard, echo, web },
    connectPort,
    stop: () => killGroup(child),
  };
}

/** The 10-line Node relay (bench/baseline-relay.ts): the floor. */
export async function startNodeRelay(pki: TestPki, up: Upstreams): Promise<Subject> {
  const { certPath, keyPath } = pki.gateway;
  const args = [join(repo, 'bench/baseline-relay.ts'), certPath, keyPath, pki.bundlePath, SNAT.relay];
  const child = spawnGroup(subjectNode, [
    '--import',
    'tsx',
    ...args,
    String(up.discard),
    String(up.echo),
    String(up.web),
  ]);
  const match = await waitForOutput(child, /^(\d+) (\d+) (\d+)\n/m);
  return {
    name: 'node-relay',
    pgid: child.pid as number,
    ports: { discard: Number(match[1]), echo: Number(match[2]), web: Number(match[3]) },
    stop: () => killGroup(child),
  };
}

const NGINX_STREAM_MODULE = '/usr/lib/nginx/modules/ngx_stream_module.so';

export function nginxVersion(): string | undefined {
  // `nginx -v` prints to stderr.
  const run = spawnSync('nginx', ['-v'], { encoding: 'utf8' });
  return /nginx\/(\S+)/.exec(`${run.stderr ?? ''}${run.stdout ?? ''}`)?.[1];
}

/** nginx `stream`, configured like the gateway: mTLS against the same anchor, proxy_bind for SNAT. */
export async function startNginx(pki: TestPki, up: Upstreams, dir: string): Promise<Subject | undefined> {
  if (!existsSync(NGINX_STREAM_MODULE) || !nginxVersion()) return undefined;
  const ports = { discard: await freePort(), echo: await freePort(), web: await freePort() };
  const server = (listen: number, upstream: number) => `
    server {
      listen 127.0.0.1:${listen} ssl;
      ssl_certificate ${pki.gateway.certPath};
      ssl_certificate_key ${pki.gateway.keyPath};
      ssl_client_certificate ${pki.bundlePath};
      ssl_verify_client on;
      ssl_verify_depth 3;
      ssl_protocols TLSv1.2 TLSv1.3;
      ssl_session_tickets on;
      proxy_pass 127.0.0.1:${upstream};
      proxy_bind ${SNAT.nginx};
    }`;
  const conf = join(dir, 'nginx.conf');
  writeFileSync(
    conf,
    `load_module ${NGINX_STREAM_MODULE};
daemon off; master_process on; worker_processes 1; worker_rlimit_nofile ${NOFILE};
error_log ${join(dir, 'nginx-error.log')} error; pid ${join(dir, 'nginx.pid')};
events { worker_connections 30000; }
stream {${server(ports.discard, up.discard)}${server(ports.echo, up.echo)}${server(ports.web, up.web)}
}
`,
  );
  const child = spawnGroup('nginx', ['-c', conf, '-p', dir]);
  // nginx logs nothing on a good start: wait until it accepts.
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (await canConnect(ports.web)) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return { name: 'nginx', pgid: child.pid as number, ports, stop: () => killGroup(child) };
}

function canConnect(port: number): Promise<boolean> {
  return import('node:net').then(
    ({ connect }) =>
      new Promise((resolve) => {
        const s = connect(port, '127.0.0.1');
        s.once('connect', () => {
          s.destroy();
          resolve(true);
        });
        s.once('error', () => resolve(false));
      }),
  );
}

export type { WrittenLeaf };
