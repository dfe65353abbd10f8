import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import type { WrittenLeaf } from './test-pki.ts';

/** A TLS client over a TCP socket the caller keeps, so it can FIN or RST beneath TLS. */
export interface RawTlsClient {
  readonly raw: Socket;
  readonly tls: TLSSocket;
  received(): string;
  /** Resolves true once the gateway ended or closed the connection, false after `ms`. */
  closedWithin(ms: number): Promise<boolean>;
}

export async function rawTlsClient(port: number, leaf: WrittenLeaf, caPath: string): Promise<RawTlsClient> {
  const raw = netConnect({ port, host: '127.0.0.1', allowHalfOpen: true });
  raw.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    raw.once('connect', () => resolve());
    raw.once('error', reject);
  });
  const tls = tlsConnect({
    socket: raw,
    ca: readFileSync(caPath),
    cert: readFileSync(leaf.certPath),
    key: readFileSync(leaf.keyPath),
    servername: 'localhost',
  });
  tls.on('error', () => {});
  let text = '';
  tls.on('data', (chunk) => {
    text += chunk;
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('TLS handshake did not finish in 5 s')), 5_000);
    tls.once('secureConnect', () => {
      clearTimeout(timer);
      resolve();
    });
    tls.once('close', () => reject(new Error('closed during the TLS handshake')));
  });
  // The raw socket allows half-open, so the gateway closing shows as 'end' first.
  const closed = new Promise<void>((resolve) => {
    tls.once('end', () => resolve());
    tls.once('close', () => resolve());
  });
  return {
    raw,
    tls,
    received: () => text,
    closedWithin: (ms) =>
      Promise.race([closed.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms))]),
  };
}

/** Polls `check` every 20 ms until it returns true or `ms` passes; returns the last result. */
export async function pollUntil(check: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}

/** Sends the first bytes of a ClientHello, then a TCP reset: a reset mid-handshake. */
export async function resetMidHandshake(port: number): Promise<void> {
  const socket = netConnect({ port, host: '127.0.0.1' });
  socket.on('error', () => {});
  await new Promise<void>((resolve) => {
    socket.once('connect', () => resolve());
    socket.once('error', () => resolve());
  });
  socket.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]));
  await new Promise((r) => setTimeout(r, 5));
  if (!socket.destroyed) socket.resetAndDestroy();
}

/** Upstreams with one behaviour each, on loopback ports of this process. */
export interface ScriptedUpstream {
  readonly port: number;
  close(): void;
}

function listenScripted(onSocket: (socket: Socket) => void): Promise<ScriptedUpstream> {
  const sockets = new Set<Socket>();
  const server: Server = createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    onSocket(socket);
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({
        port: (server.address() as { port: number }).port,
        close: () => {
          for (const s of sockets) s.destroy();
          server.close();
        },
      }),
    ),
  );
}

/** Answers at once and closes, like tinyproxy answering a request that never comes. */
export const answerAndClose = () => listenScripted((s) => s.end('HTTP/1.0 400 Bad Request\r\n\r\n'));
/** Echoes every byte; ends when the client ends. */
export const echoUpstream = () => listenScripted((s) => s.pipe(s));
/** Sends a few bytes, then a TCP reset: an upstream reset mid-stream. */
export const resetMidStream = () =>
  listenScripted((s) => {
    s.write('partial ');
    // Long enough for a busy gateway to read the bytes first: an RST that arrives before they
    // are read makes the kernel drop them, and the client would see a reset without data.
    setTimeout(() => s.resetAndDestroy(), 300);
  });

/**
 * An upstream whose accept queue is full (listen backlog 0 plus two parked connections), so a
 * dial to it stays in flight (SYN retransmits) until `open()`; then it echoes. Without `open()`
 * it is an upstream that never accepts. A Python process: Node accepts every connection itself.
 */
export interface GatedUpstream extends ScriptedUpstream {
  open(): void;
}

const GATED_PY = `
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', 0)); s.listen(0)
print(s.getsockname()[1], flush=True)
sys.stdin.readline()
def serve(c):
    try:
        while True:
            d = c.recv(65536)
            if not d: break
            c.sendall(d)
    except Exception: pass
    c.close()
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
`;

export async function gatedUpstream(): Promise<GatedUpstream> {
  const child: ChildProcess = spawn('python3', ['-c', GATED_PY], { stdio: ['pipe', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout?.once('data', (chunk) => resolve(Number(String(chunk).trim())));
    child.once('exit', (code) => reject(new Error(`gated upstream exited (${code})`)));
  });
  const parked = [0, 1].map(() => netConnect({ port, host: '127.0.0.1' }).on('error', () => {}));
  await new Promise((r) => setTimeout(r, 100));
  return {
    port,
    open: () => child.stdin?.write('\n'),
    close: () => {
      for (const socket of parked) socket.destroy();
      child.kill('SIGKILL');
    },
  };
}

/** `openssl s_time -new` for `seconds`: full handshakes, each closed at once without close_notify. */
export function sTimeNew(port: number, leaf: WrittenLeaf, caPath: string, seconds: number): Promise<string> {
  const args = ['s_time', '-connect', `127.0.0.1:${port}`, '-new', '-time', String(seconds)];
  args.push('-cert', leaf.certPath, '-key', leaf.keyPath, '-CAfile', caPath);
  return new Promise((resolve) => {
    const child = spawn('openssl', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (chunk) => {
      out += chunk;
    });
    child.stderr.on('data', (chunk) => {
      out += chunk;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), (seconds + 20) * 1000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(out);
    });
  });
}
