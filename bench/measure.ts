import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { connect, type TLSSocket } from 'node:tls';
import type { WrittenLeaf } from '../test/helpers/test-pki.ts';
import { groupCpuSeconds, groupRssBytes } from './proc-group.ts';

export interface ClientIdentity {
  readonly leaf: WrittenLeaf;
  readonly caPath: string;
}

const settle = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs `fn` and returns its result with the CPU seconds the subject's group spent meanwhile. */
export async function withCpu<T>(pgid: number, fn: () => Promise<T>): Promise<{ value: T; cpu: number }> {
  const before = groupCpuSeconds(pgid);
  const value = await fn();
  await settle(200); // let the subject finish closing what the client just closed
  return { value, cpu: groupCpuSeconds(pgid) - before };
}

/**
 * `openssl s_time -new|-reuse -www /` against a listener relaying to the one-line HTTP upstream:
 * a full or resumed TLS 1.3 mTLS handshake, one tiny request and response, close. Returns the
 * number of connections made. (s_time reads TLS 1.3 tickets only while reading a page.)
 */
export function sTime(
  port: number,
  mode: 'new' | 'reuse',
  seconds: number,
  id: ClientIdentity,
): Promise<{ connections: number; resumed: number }> {
  const args = ['s_time', '-connect', `127.0.0.1:${port}`, `-${mode}`, '-time', String(seconds), '-www', '/'];
  args.push('-cert', id.leaf.certPath, '-key', id.leaf.keyPath, '-CAfile', id.caPath);
  return new Promise((resolve, reject) => {
    const child = spawn('openssl', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c) => {
      out += c;
    });
    child.stderr.on('data', (c) => {
      out += c;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), (seconds + 30) * 1000);
    child.once('exit', () => {
      clearTimeout(timer);
      const match = /(\d+) connections in [\d.]+ real seconds/.exec(out);
      if (!match) reject(new Error(`s_time ${mode} on ${port}: ${out.slice(-400)}`));
      else {
        // s_time prints 'r' for a resumed connection and '*' for a full handshake.
        const marks = /^[r*]+$/m.exec(out)?.[0] ?? '';
        resolve({ connections: Number(match[1]), resumed: marks.replaceAll('*', '').length });
      }
    });
  });
}

export function tlsOpen(port: number, id: ClientIdentity): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = connect({
      host: '127.0.0.1',
      port,
      ca: readFileSync(id.caPath),
      cert: readFileSync(id.leaf.certPath),
      key: readFileSync(id.leaf.keyPath),
      servername: 'localhost',
    });
    socket.once('error', reject);
    socket.once('secureConnect', () => {
      socket.removeListener('error', reject);
      socket.on('error', () => {});
      resolve(socket);
    });
  });
}

/** Writes `mb` MB through one tunnel into the discarding upstream; resolves once all is written. */
export async function relay(port: number, mb: number, id: ClientIdentity): Promise<number> {
  const socket = await tlsOpen(port, id);
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  const total = mb * 1024 * 1024;
  const started = process.hrtime.bigint();
  for (let sent = 0; sent < total; sent += chunk.length) {
    if (!socket.write(chunk)) await new Promise((r) => socket.once('drain', r));
  }
  await new Promise<void>((resolve) => socket.end(resolve));
  socket.destroy();
  return mb / (Number(process.hrtime.bigint() - started) / 1e9); // MB/s
}

/** Round-trip times (µs) of `count` 1 KB messages on one open stream to the echo upstream. */
export async function echoRtts(socket: Socket, count: number): Promise<number[]> {
  socket.setNoDelay(true);
  const message = Buffer.alloc(1024, 0x62);
  const rtts: number[] = [];
  for (let i = 0; i < count; i++) {
    const started = process.hrtime.bigint();
    await new Promise<void>((resolve) => {
      let got = 0;
      const onData = (chunk: Buffer) => {
        got += chunk.length;
        if (got >= message.length) {
          socket.removeListener('data', onData);
          resolve();
        }
      };
      socket.on('data', onData);
      socket.write(message);
    });
    rtts.push(Number(process.hrtime.bigint() - started) / 1000);
  }
  return rtts;
}

export function tcpOpen(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = netConnect(port, '127.0.0.1', () => resolve(socket));
    socket.once('error', reject);
  });
}

/** RSS growth of the subject's group per idle open tunnel (KiB), with `count` tunnels open. */
export async function idleTunnelKib(pgid: number, port: number, count: number, id: ClientIdentity): Promise<number> {
  await settle(500);
  const before = groupRssBytes(pgid);
  const sockets: TLSSocket[] = [];
  let failures = 0;
  // A subject that resets some connects (backlog, limits) is measured over the tunnels it kept.
  const opener = async () => {
    while (sockets.length < count && failures < 50) {
      try {
        sockets.push(await tlsOpen(port, id));
      } catch {
        failures += 1;
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: 8 }, opener));
    await settle(1500);
    if (sockets.length < count * 0.9) return Number.NaN;
    return (groupRssBytes(pgid) - before) / sockets.length / 1024;
  } finally {
    for (const socket of sockets) socket.destroy();
    await settle(1000);
  }
}

/** HTTP CONNECT tunnels set up (TLS + CONNECT + 200) and closed, `concurrency` at a time. */
export async function connectSetups(port: number, count: number, target: string, id: ClientIdentity): Promise<void> {
  let next = 0;
  const one = async () => {
    const socket = await tlsOpen(port, id);
    socket.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
    await new Promise<void>((resolve, reject) => {
      let head = '';
      socket.on('data', (chunk: Buffer) => {
        head += chunk.toString('latin1');
        if (!head.includes('\r\n\r\n')) return;
        if (head.startsWith('HTTP/1.1 200')) resolve();
        else reject(new Error(head));
      });
    });
    socket.destroy();
  };
  const worker = async () => {
    while (next < count) {
      next += 1;
      await one();
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
}

/** New connections per wall second with `parallel` s_time -new clients at once. */
export async function newConnectionRate(port: number, seconds: number, parallel: number, id: ClientIdentity) {
  // Every client finishes before a failure is reported, so a repeat measures nothing left over.
  const settled = await Promise.allSettled(Array.from({ length: parallel }, () => sTime(port, 'new', seconds, id)));
  const failed = settled.find((run) => run.status === 'rejected');
  if (failed) throw failed.reason;
  return settled.reduce((sum, run) => sum + (run.status === 'fulfilled' ? run.value.connections : 0), 0) / seconds;
}

export function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

export function median(values: readonly number[]): number {
  const finite = values.filter((v) => Number.isFinite(v));
  return finite.length ? percentile(finite, 50) : Number.NaN;
}
