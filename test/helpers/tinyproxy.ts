import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type DaemonProcess, startDaemon } from './daemon-process.ts';
import { freePort, waitForPort } from './loopback-ports.ts';

export interface Tinyproxy {
  readonly port: number;
  readonly process: DaemonProcess;
  /** tinyproxy's own log file (LogFile), where it names each client address. */
  log(): string;
  stop(): Promise<void>;
}

export interface TinyproxyOptions {
  /** Where config, log and pid file go; a fresh temp dir (removed on stop) when omitted. */
  readonly dir?: string;
  /** Source address of tinyproxy's own upstream dials; the OS chooses when omitted. */
  readonly bind?: string;
  /** Ports CONNECT may reach; every port when omitted. */
  readonly connectPorts?: readonly number[];
}

/**
 * Debian's tinyproxy as the seed article's "internet proxy", run unprivileged: no User/Group
 * (it keeps the current user), listen on 127.0.0.1, accept loopback clients only, dial out from
 * `bind` so the target sees a chosen address, and allow CONNECT only to `connectPorts`.
 */
export async function startTinyproxy(options: TinyproxyOptions = {}): Promise<Tinyproxy> {
  const ownDir = options.dir === undefined;
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'egw-tinyproxy-'));
  const port = await freePort();
  const logPath = join(dir, 'tinyproxy.log');
  const confPath = join(dir, 'tinyproxy.conf');
  writeFileSync(
    confPath,
    [
      `Port ${port}`,
      'Listen 127.0.0.1',
      ...(options.bind ? [`Bind ${options.bind}`] : []),
      'Timeout 30',
      'MaxClients 20',
      'Allow 127.0.0.0/8',
      `LogFile "${logPath}"`,
      'LogLevel Connect',
      `PidFile "${join(dir, 'tinyproxy.pid')}"`,
      ...(options.connectPorts ?? []).map((p) => `ConnectPort ${p}`),
      '',
    ].join('\n'),
  );
  const process = startDaemon('tinyproxy', ['-d', '-c', confPath]);
  try {
    await waitForPort(port);
  } catch (error) {
    await process.stop();
    if (ownDir) rmSync(dir, { recursive: true, force: true });
    throw new Error(`tinyproxy did not start: ${(error as Error).message}\n${process.output()}`);
  }
  return {
    port,
    process,
    log: () => {
      try {
        return readFileSync(logPath, 'utf8');
      } catch {
        return '';
      }
    },
    stop: async () => {
      await process.stop();
      if (ownDir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Pairs each proxied request in tinyproxy's log with the client address of its connection (same
 * file descriptor). Connections without a request, such as a readiness probe, are left out.
 */
export function tinyproxyRequests(log: string): Array<{ client: string; request: string }> {
  const clientByFd = new Map<string, string>();
  const requests: Array<{ client: string; request: string }> = [];
  for (const line of log.split('\n')) {
    const connect = /Connect \(file descriptor (\d+)\): (\S+)/.exec(line);
    if (connect?.[1] && connect[2]) clientByFd.set(connect[1], connect[2]);
    const request = /Request \(file descriptor (\d+)\): (.*)$/.exec(line);
    if (request?.[1] && request[2])
      requests.push({ client: clientByFd.get(request[1]) ?? '(unknown)', request: request[2] });
  }
  return requests;
}
