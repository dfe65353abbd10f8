import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { waitUntil } from './poll-until.ts';

/**
 * A port that was free a moment ago. Only for what cannot bind `:0` and report the port it got:
 * third-party daemons that need a port number in their config file (tinyproxy, rsyslog, stunnel,
 * nginx, haproxy, dnsmasq, a published container port), `serve --workers` (each worker listens
 * itself), or a port that must be known before anything listens on it (a receiver started late,
 * a port where nothing listens). Our own servers bind `:0`: in-process gateways report
 * `gateway.addresses`, child gateways log it (`listenerPort`, `adminPortOf`), Node servers `listen(0)`.
 *
 * Why not ask the kernel with `:0` and close: it handed the same port to two calls in a row in
 * fresh-clone CI (haproxy then bound two frontends to one port with SO_REUSEPORT and split the
 * connections between them), and a later `:0` bind or an outgoing connection may take it before
 * the daemon binds. So the port is drawn at random below the kernel's ephemeral range, where
 * neither `:0` nor a client socket lands, never twice in one process, and checked by binding it.
 * The caller still waits with `waitForPort` and fails clearly if another test process took it.
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  return drawPort(host, bindable);
}

/** The same for a UDP port (rsyslog's imudp); never one freePort handed out either. */
export async function freeUdpPort(host = '127.0.0.1'): Promise<number> {
  return drawPort(host, udpBindable);
}

async function drawPort(host: string, isFree: (port: number, host: string) => Promise<boolean>): Promise<number> {
  const below = ephemeralLow();
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = FIXED_PORTS_FROM + Math.floor(Math.random() * (below - FIXED_PORTS_FROM));
    if (handedOut.has(port) || !(await isFree(port, host))) continue;
    handedOut.add(port);
    return port;
  }
  throw new Error(`no free port on ${host} in ${FIXED_PORTS_FROM}-${below - 1} after 100 tries`);
}

const FIXED_PORTS_FROM = 20_000;
const handedOut = new Set<number>();

/** The first port of `net.ipv4.ip_local_port_range` (32768 by default). */
function ephemeralLow(): number {
  const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
  if (!(low > FIXED_PORTS_FROM + 1000)) throw new Error(`ephemeral range starts at ${low}: no room below it`);
  return low;
}

async function bindable(port: number, host: string): Promise<boolean> {
  const server = createServer();
  const bound = await new Promise<boolean>((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(port, host, () => resolve(true));
  });
  if (bound) await new Promise((resolve) => server.close(resolve));
  return bound;
}

async function udpBindable(port: number, host: string): Promise<boolean> {
  const socket = createSocket('udp4');
  const bound = await new Promise<boolean>((resolve) => {
    socket.once('error', () => resolve(false));
    socket.bind(port, host, () => resolve(true));
  });
  await new Promise<void>((resolve) => socket.close(() => resolve()));
  return bound;
}

/**
 * The port a gateway child process bound for listener `name`, read from its start-up log line
 * (`listener egress (connect) on 127.0.0.1:40123`), so child gateways can listen on `:0` too.
 */
export function listenerPort(log: string, name: string): number {
  const match = new RegExp(`listener ${name} \\([^)]*\\) on [^\\s]*:(\\d+)[^\\n]*\\n`).exec(log);
  if (!match) throw new Error(`no start-up line for listener ${name} in: ${log}`);
  return Number(match[1]);
}

/**
 * The port a gateway child process bound for its admin API (`admin: { listen: 127.0.0.1:0 }`), read
 * from its start-up log: `admin API on http://127.0.0.1:40123`, or from a cluster primary
 * `2 workers serving …; admin API on port 40123`.
 */
export function adminPortOf(log: string): number {
  const match = /admin API on (?:http:\/\/[^\s]*:|port )(\d+)/.exec(log);
  if (!match) throw new Error(`no admin API start-up line in: ${log}`);
  return Number(match[1]);
}

/** Resolves once a TCP connect to host:port succeeds; rejects after `timeoutMs`. */
export async function waitForPort(port: number, host = '127.0.0.1', timeoutMs = 10_000): Promise<void> {
  const accepts = () =>
    new Promise<boolean>((resolve) => {
      const socket = connect({ host, port }, () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
  await waitUntil(accepts, timeoutMs, `something to listen on ${host}:${port}`);
}

/** IPv4 TCP sockets in LISTEN on `port`, from /proc/net/tcp (column 4 is the state, 0A = LISTEN). */
export function listeningSocketsOn(port: number): number {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  return readFileSync('/proc/net/tcp', 'utf8')
    .split('\n')
    .slice(1)
    .map((line) => line.trim().split(/\s+/))
    .filter((f) => f[1]?.endsWith(`:${hexPort}`) && f[3] === '0A').length;
}
