import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A free TCP port on 127.0.0.1 (bind to 0, read, release). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
  });
}

export interface Tinyproxy {
  readonly port: number;
  readonly logPath: string;
  log(): string;
  stop(): Promise<void>;
}

/**
 * Debian's tinyproxy as an unprivileged foreground process on loopback: the legacy HTTP proxy
 * the seed topology puts behind the gateway's tcp listener. Its log names each client address.
 */
export async function startTinyproxy(options: { bind?: string } = {}): Promise<Tinyproxy> {
  const dir = mkdtempSync(join(tmpdir(), 'egw-tinyproxy-'));
  const port = await freePort();
  const logPath = join(dir, 'tinyproxy.log');
  const conf = [
    `Port ${port}`,
    'Listen 127.0.0.1',
    ...(options.bind ? [`Bind ${options.bind}`] : []),
    'Timeout 30',
    `LogFile "${logPath}"`,
    'LogLevel Connect',
    `PidFile "${join(dir, 'tinyproxy.pid')}"`,
    'MaxClients 50',
    'Allow 127.0.0.0/8',
    'DisableViaHeader Yes',
  ].join('\n');
  writeFileSync(join(dir, 'tinyproxy.conf'), `${conf}\n`);
  const child: ChildProcess = spawn('tinyproxy', ['-d', '-c', join(dir, 'tinyproxy.conf')], { stdio: 'ignore' });
  const deadline = Date.now() + 5000;
  for (;;) {
    const listening = await new Promise<boolean>((resolve) => {
      const probe = createServer();
      probe.once('error', () => resolve(true));
      probe.listen(port, '127.0.0.1', () => probe.close(() => resolve(false)));
    });
    if (listening) break;
    if (Date.now() > deadline || child.exitCode !== null) throw new Error('tinyproxy did not start');
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    port,
    logPath,
    log: () => {
      try {
        return readFileSync(logPath, 'utf8');
      } catch {
        return '';
      }
    },
    stop: async () => {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
