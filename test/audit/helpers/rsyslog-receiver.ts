import { type ChildProcess, spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pollUntil } from '../../helpers/poll-until.ts';

/** One message as rsyslog parsed it (RFC 5424 fields), written by the `json` template below. */
export interface ReceivedMessage {
  readonly pri: string;
  readonly version: string;
  readonly timestamp: string;
  readonly hostname: string;
  readonly app: string;
  readonly procid: string;
  readonly msgid: string;
  readonly sd: string;
  readonly msg: string;
  readonly input: string;
}

export interface RsyslogOptions {
  readonly tcp?: boolean;
  readonly udp?: boolean;
  /** TLS input (RFC 5425) with the ossl driver. authMode x509/certvalid requires a client certificate from `ca`. */
  readonly tls?: {
    readonly ca: string;
    readonly cert: string;
    readonly key: string;
    readonly authMode: 'anon' | 'x509/certvalid';
  };
}

export interface RsyslogReceiver {
  readonly dir: string;
  readonly tcpPort: number;
  readonly tlsPort: number;
  readonly udpPort: number;
  readonly outputPath: string;
  /** rsyslogd's own stderr (its error messages), for assertion messages. */
  readonly log: () => string;
  start(): Promise<void>;
  stop(signal?: NodeJS.Signals): Promise<void>;
  messages(): ReceivedMessage[];
  waitFor(predicate: (messages: ReceivedMessage[]) => boolean, timeoutMs?: number): Promise<ReceivedMessage[]>;
  cleanup(): Promise<void>;
}

const RSYSLOGD = ['/usr/sbin/rsyslogd', '/sbin/rsyslogd'].find((p) => existsSync(p)) ?? 'rsyslogd';

export async function freeTcpPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function freeUdpPort(): Promise<number> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  const { port } = socket.address();
  await new Promise<void>((resolve) => socket.close(() => resolve()));
  return port;
}

function probe(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/**
 * rsyslogd from Debian as a foreground process on loopback (`rsyslogd -n -f CONF -i PIDFILE`),
 * with its own work directory and free high ports, so it runs next to (or instead of) a system
 * rsyslog and needs no root. Every received message is written as one JSON line of parsed
 * RFC 5424 fields; tests poll that file.
 */
export async function createRsyslogReceiver(options: RsyslogOptions): Promise<RsyslogReceiver> {
  const dir = mkdtempSync(join(tmpdir(), 'egw-rsyslog-'));
  mkdirSync(join(dir, 'work'));
  const outputPath = join(dir, 'received.jsonl');
  const pidPath = join(dir, 'rsyslogd.pid');
  const tcpPort = options.tcp ? await freeTcpPort() : 0;
  const tlsPort = options.tls ? await freeTcpPort() : 0;
  const udpPort = options.udp ? await freeUdpPort() : 0;
  const lines = [
    `global(workDirectory="${dir}/work" maxMessageSize="64k"${
      options.tls
        ? ` defaultNetstreamDriverCAFile="${options.tls.ca}" defaultNetstreamDriverCertFile="${options.tls.cert}" defaultNetstreamDriverKeyFile="${options.tls.key}"`
        : ''
    })`,
  ];
  if (options.tcp || options.tls) lines.push('module(load="imtcp")');
  if (options.tcp) lines.push(`input(type="imtcp" address="127.0.0.1" port="${tcpPort}" ruleset="audit")`);
  if (options.tls) {
    lines.push(
      `input(type="imtcp" address="127.0.0.1" port="${tlsPort}" ruleset="audit" streamDriver.name="ossl" streamDriver.mode="1" streamDriver.authMode="${options.tls.authMode}")`,
    );
  }
  if (options.udp)
    lines.push('module(load="imudp")', `input(type="imudp" address="127.0.0.1" port="${udpPort}" ruleset="audit")`);
  const fields = [
    'pri:pri',
    'version:protocol-version',
    'hostname:hostname',
    'app:app-name',
    'procid:procid',
    'msgid:msgid',
    'sd:structured-data',
    'msg:msg',
    'input:inputname',
  ];
  lines.push(
    'template(name="json" type="list" option.jsonf="on") {',
    '  property(outname="timestamp" name="timestamp" dateFormat="rfc3339" format="jsonf")',
    ...fields.map((f) => {
      const [out, name] = f.split(':');
      return `  property(outname="${out}" name="${name}" format="jsonf")`;
    }),
    '}',
    'ruleset(name="audit") {',
    `  action(type="omfile" file="${outputPath}" template="json")`,
    '}',
  );
  const confPath = join(dir, 'rsyslog.conf');
  writeFileSync(confPath, `${lines.join('\n')}\n`);

  let child: ChildProcess | undefined;
  let stderr = '';
  const ports = [tcpPort, tlsPort].filter((p) => p !== 0);

  async function start(): Promise<void> {
    rmSync(pidPath, { force: true }); // a stale pid file makes rsyslogd refuse to start
    const proc = spawn(RSYSLOGD, ['-n', '-f', confPath, '-i', pidPath], { stdio: ['ignore', 'ignore', 'pipe'] });
    child = proc;
    proc.stderr?.on('data', (chunk) => {
      stderr += chunk;
    });
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`rsyslogd exited with ${proc.exitCode}: ${stderr}`);
      const ready = ports.length === 0 ? existsSync(pidPath) : (await Promise.all(ports.map(probe))).every(Boolean);
      if (ready) return;
      if (Date.now() > deadline) throw new Error(`rsyslogd did not listen within 10 s: ${stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async function stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const proc = child;
    child = undefined;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    proc.kill(signal);
    const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }

  function messages(): ReceivedMessage[] {
    if (!existsSync(outputPath)) return [];
    // Only complete lines: rsyslogd may be part-way through writing the last one.
    const text = readFileSync(outputPath, 'utf8');
    return text
      .slice(0, text.lastIndexOf('\n') + 1)
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as ReceivedMessage);
  }

  return {
    dir,
    tcpPort,
    tlsPort,
    udpPort,
    outputPath,
    log: () => stderr,
    start,
    stop,
    messages,
    async waitFor(predicate, timeoutMs = 30_000) {
      return pollUntil(
        messages,
        predicate,
        timeoutMs,
        () => `rsyslog's messages to meet the condition (have ${messages().length}). rsyslogd: ${stderr}`,
      );
    },
    async cleanup() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
