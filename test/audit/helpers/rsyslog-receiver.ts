import { type ChildProcess, spawn } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, freeUdpPort } from '../../helpers/loopback-ports.ts';
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

/** Inodes of the sockets listening on 127.0.0.1:`port` (from /proc/net/tcp). */
function listenerInodes(port: number): Set<string> {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  const inodes = new Set<string>();
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields[1] === local && fields[3] === '0A' && fields[9]) inodes.add(fields[9]);
  }
  return inodes;
}

/** Whether process `pid` itself holds a socket listening on 127.0.0.1:`port`. */
function listensOn(pid: number, port: number): boolean {
  const inodes = listenerInodes(port);
  if (inodes.size === 0) return false;
  try {
    return readdirSync(`/proc/${pid}/fd`).some((fd) => {
      try {
        return inodes.has(/^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))?.[1] ?? '');
      } catch {
        return false;
      }
    });
  } catch {
    return false;
  }
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
  let tcpPort = options.tcp ? await freePort() : 0;
  let tlsPort = options.tls ? await freePort() : 0;
  const udpPort = options.udp ? await freeUdpPort() : 0;
  const confPath = join(dir, 'rsyslog.conf');
  const writeConf = () => {
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
    writeFileSync(confPath, `${lines.join('\n')}\n`);
  };
  writeConf();

  let child: ChildProcess | undefined;
  let stderr = '';
  let started = false;

  /** One start attempt: 'taken' when another process got a port between freePort and rsyslogd's bind. */
  async function startOnce(): Promise<'ok' | 'taken'> {
    rmSync(pidPath, { force: true }); // a stale pid file makes rsyslogd refuse to start
    stderr = ''; // this attempt's own messages decide whether it got its ports
    const proc = spawn(RSYSLOGD, ['-n', '-f', confPath, '-i', pidPath], { stdio: ['ignore', 'ignore', 'pipe'] });
    child = proc;
    proc.stderr?.on('data', (chunk) => {
      stderr += chunk;
    });
    const ports = [tcpPort, tlsPort].filter((p) => p !== 0);
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`rsyslogd exited with ${proc.exitCode}: ${stderr}`);
      // rsyslogd carries on without an input whose port it could not bind: that is a taken port too.
      if (/Could not create tcp listener/.test(stderr)) return 'taken';
      if (ports.length === 0 ? existsSync(pidPath) : ports.every((port) => listensOn(proc.pid as number, port)))
        return 'ok';
      // After 2 s, a port that has a listener but not rsyslogd's is a parallel test's.
      const waited = Date.now() > deadline - 8_000;
      if (waited && ports.some((port) => listenerInodes(port).size > 0 && !listensOn(proc.pid as number, port)))
        return 'taken';
      if (Date.now() > deadline) throw new Error(`rsyslogd did not listen within 10 s: ${stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async function start(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const result = await startOnce();
      if (result === 'ok') {
        started = true;
        return;
      }
      await stop();
      // Ports are only moved before the first start: after it, tests hold them.
      if (started || attempt >= 3) throw new Error(`rsyslogd's port is taken by another process: ${stderr}`);
      if (tcpPort) tcpPort = await freePort();
      if (tlsPort) tlsPort = await freePort();
      writeConf();
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
    get tcpPort() {
      return tcpPort;
    },
    get tlsPort() {
      return tlsPort;
    },
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
