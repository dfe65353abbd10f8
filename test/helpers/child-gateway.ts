import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { writeTestConfig } from './test-gateway.ts';
import type { TestPki } from './test-pki.ts';

export interface AuditLine {
  readonly action: string;
  readonly code?: string;
  readonly connectionId: string;
  readonly listener: string;
  readonly reason: string;
}

/** What must be back to zero (or baseline) once every client is gone. */
export interface LeakReport {
  readonly connections: number;
  readonly activeTunnels: number;
  readonly identityConnections: number;
  readonly socketFds: number;
  readonly permitted: number;
  readonly closed: number;
  /** Connection ids with an egress-permitted and not exactly one egress-closed (or the reverse). */
  readonly unpaired: readonly string[];
}

export interface ChildGateway {
  readonly pid: number;
  port(listener: string): number;
  records(): AuditLine[];
  socketFds(): number;
  rssBytes(): number;
  /** Sum of a metric's samples in /metrics (0 when absent). */
  metric(name: string): Promise<number>;
  leaks(): Promise<LeakReport>;
  /** Polls `leaks()` until tunnels, limiter and fds are back (fds <= baseline) or `timeoutMs` passes. */
  settled(baselineFds: number, timeoutMs?: number): Promise<LeakReport>;
  stop(): Promise<void>;
}

/** Socket fds of a process, from /proc (Linux). */
export function socketFdsOf(pid: number): number {
  let count = 0;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith('socket:')) count += 1;
    } catch {
      // closed while listing
    }
  }
  return count;
}

export function rssOf(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(match?.[1] ?? 0) * 1024;
}

/** Pairs egress-permitted with egress-closed by connection id (a connection has at most one tunnel here). */
export function unpairedTunnels(records: readonly AuditLine[]): string[] {
  const balance = new Map<string, number>();
  for (const r of records) {
    if (r.action === 'egress-permitted') balance.set(r.connectionId, (balance.get(r.connectionId) ?? 0) + 1);
    if (r.action === 'egress-closed') balance.set(r.connectionId, (balance.get(r.connectionId) ?? 0) - 1);
  }
  return [...balance].filter(([, n]) => n !== 0).map(([id]) => id);
}

function readAuditLines(path: string): AuditLine[] {
  let text = '';
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as AuditLine);
}

/** Sum of a metric's samples in a Prometheus text exposition (0 when absent). */
function sumMetric(text: string, name: string): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name} `) || line.startsWith(`${name}{`)) sum += Number(line.split(' ').pop());
  }
  return sum;
}

async function pollLeaks(leaks: () => Promise<LeakReport>, baselineFds: number, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const report = await leaks();
    const clean =
      report.connections === 0 &&
      report.activeTunnels === 0 &&
      report.identityConnections === 0 &&
      report.socketFds <= baselineFds &&
      report.unpaired.length === 0;
    if (clean || Date.now() > deadline) return report;
    await new Promise((r) => setTimeout(r, 200));
  }
}

function waitForLine(child: ChildProcess, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`child gateway did not start: ${err}`)), timeoutMs);
    child.stderr?.on('data', (chunk) => {
      err += chunk;
    });
    child.stdout?.on('data', (chunk) => {
      out += chunk;
      const end = out.indexOf('\n');
      if (end === -1) return;
      clearTimeout(timer);
      resolve(out.slice(0, end));
    });
    child.once('exit', (code) => reject(new Error(`child gateway exited (${code}): ${err}`)));
  });
}

/** Starts a gateway in a child process (its own fds and RSS) with `config` on top of the test PKI's identity. */
export async function startChildGateway(pki: TestPki, config: Record<string, unknown>): Promise<ChildGateway> {
  const configPath = writeTestConfig(pki, config);
  const auditPath = join(dirname(configPath), 'audit.jsonl');
  const main = new URL('./child-gateway-main.ts', import.meta.url).pathname;
  const child = spawn(process.execPath, ['--import', 'tsx', main, configPath, auditPath], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const started = JSON.parse(await waitForLine(child, 30_000)) as { ports: Record<string, number>; admin: number };
  const pid = child.pid as number;
  const admin = async (path: string) => {
    const response = await fetch(`http://127.0.0.1:${started.admin}${path}`);
    return response.text();
  };
  const records = () => readAuditLines(auditPath);
  const metric = async (name: string) => sumMetric(await admin('/metrics'), name);
  const leaks = async (): Promise<LeakReport> => {
    const all = records();
    return {
      connections: (JSON.parse(await admin('/connections')) as unknown[]).length,
      activeTunnels: await metric('egw_active_tunnels'),
      identityConnections: await metric('egw_identity_connections'),
      socketFds: socketFdsOf(pid),
      permitted: all.filter((r) => r.action === 'egress-permitted').length,
      closed: all.filter((r) => r.action === 'egress-closed').length,
      unpaired: unpairedTunnels(all),
    };
  };
  return {
    pid,
    port: (name) => {
      const port = started.ports[name];
      if (port === undefined) throw new Error(`no listener ${name}`);
      return port;
    },
    records,
    socketFds: () => socketFdsOf(pid),
    rssBytes: () => rssOf(pid),
    metric,
    leaks,
    settled: (baselineFds, timeoutMs = 15_000) => pollLeaks(leaks, baselineFds, timeoutMs),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dirname(configPath), { recursive: true, force: true });
    },
  };
}
