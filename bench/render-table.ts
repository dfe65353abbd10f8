/**
 * Turns a bench result (bench/results/*.json) into the table of docs/benchmarks.md, between the
 * `bench-table` markers. `node --import tsx bench/render-table.ts [result.json]` regenerates the
 * docs from bench/results/latest.json (or the file given) without running the bench.
 */
import { readFileSync, writeFileSync } from 'node:fs';

export interface SubjectFigures {
  newMs: number;
  resumedMs: number;
  /** Share of the `s_time -reuse` connections that really resumed. */
  resumedShare: number;
  cpuPerGb: number;
  relayMbPerS: number;
  p50Us: number;
  p99Us: number;
  addedP50Ms: number;
  addedP99Ms: number;
  connectPerCpuS: number;
  /** RSS growth per idle open tunnel (KiB), by number of tunnels open. */
  idleKib: Record<string, number>;
}

export interface Target {
  readonly figure: string;
  readonly must: string;
  readonly value: number;
  readonly met: boolean | undefined;
}

export interface BenchResult {
  startedAt: string;
  smoke: boolean;
  config: Record<string, unknown>;
  machine: { cpus: number; model: string; loadBefore: number; loadAfter: number };
  versions: Record<string, string>;
  direct: { p50Us: number; p99Us: number };
  subjects: Record<string, SubjectFigures>;
  workers: {
    oneWorkerPerS: number;
    twoWorkersPerS: number;
    ratio: number;
    /** Gateway CPU (whole group) per connection with one worker and with two. */
    oneWorkerCpuMs?: number;
    twoWorkersCpuMs?: number;
    /** The s_time clients' own CPU per connection: they share the same cores. */
    clientCpuMs?: number;
  };
  targets: Target[];
}

const fmt = (v: number | undefined, digits = 2) => (v === undefined || !Number.isFinite(v) ? '—' : v.toFixed(digits));

/** The issue's "must" targets, as ratios to nginx in the same run (absolute where the issue says so). */
export function targetsOf(r: BenchResult): Target[] {
  const gw = r.subjects.gateway;
  const nginx = r.subjects.nginx;
  if (!gw) return [];
  const ratio = (key: 'newMs' | 'resumedMs' | 'cpuPerGb') => (nginx ? gw[key] / nginx[key] : Number.NaN);
  const check = (value: number, ok: (v: number) => boolean) => (Number.isFinite(value) ? ok(value) : undefined);
  const tunnels = Object.keys(gw.idleKib).map(Number);
  const most = String(Math.max(...tunnels));
  const kib = gw.idleKib[most] ?? Number.NaN;
  return [
    {
      figure: 'CPU per new connection / nginx',
      must: '≤ 1.0',
      value: ratio('newMs'),
      met: check(ratio('newMs'), (v) => v <= 1),
    },
    {
      figure: 'CPU per resumed connection / nginx',
      must: '≤ 2.0',
      value: ratio('resumedMs'),
      met: check(ratio('resumedMs'), (v) => v <= 2),
    },
    {
      figure: 'CPU per resumed / own new connection',
      must: '≤ 0.5',
      value: gw.resumedMs / gw.newMs,
      met: check(gw.resumedMs / gw.newMs, (v) => v <= 0.5),
    },
    {
      figure: 'CPU per GB / nginx',
      must: '≤ 1.5',
      value: ratio('cpuPerGb'),
      met: check(ratio('cpuPerGb'), (v) => v <= 1.5),
    },
    {
      figure: `RSS per idle tunnel at ${most} tunnels (KiB)`,
      must: '≤ 40',
      value: kib,
      met: check(kib, (v) => v <= 40),
    },
    {
      figure: 'p99 added latency, 1 KB echo (ms)',
      must: '≤ 0.5',
      value: gw.addedP99Ms,
      met: check(gw.addedP99Ms, (v) => v <= 0.5),
    },
    {
      figure: '`--workers 2` / one worker, new connections/s',
      must: '≥ 1.7',
      value: r.workers.ratio,
      met: check(r.workers.ratio, (v) => v >= 1.7),
    },
  ];
}

export function renderTable(r: BenchResult): string {
  const names = Object.keys(r.subjects);
  const nginx = r.subjects.nginx;
  const cell = (name: string, key: keyof Omit<SubjectFigures, 'idleKib'>, digits = 2) => {
    const value = r.subjects[name]?.[key];
    const base = nginx?.[key];
    const rel = nginx && name !== 'nginx' && value !== undefined && base && base > 0 ? ` (${fmt(value / base)}×)` : '';
    return `${fmt(value, digits)}${rel}`;
  };
  const tunnelCounts = Object.keys(r.subjects[names[0] as string]?.idleKib ?? {});
  const rows: Array<[string, (name: string) => string]> = [
    ['CPU per new mTLS connection (ms)', (n) => cell(n, 'newMs')],
    ['CPU per resumed connection (ms)', (n) => cell(n, 'resumedMs')],
    ['share of `s_time -reuse` connections resumed', (n) => fmt(r.subjects[n]?.resumedShare)],
    ['CPU per GB relayed (s)', (n) => cell(n, 'cpuPerGb')],
    ['relay throughput (MB/s)', (n) => cell(n, 'relayMbPerS', 0)],
    ['added latency p50, 1 KB echo (ms)', (n) => cell(n, 'addedP50Ms', 3)],
    ['added latency p99, 1 KB echo (ms)', (n) => cell(n, 'addedP99Ms', 3)],
    ...tunnelCounts.map(
      (count) =>
        [`RSS per idle tunnel at ${count} (KiB)`, (n: string) => fmt(r.subjects[n]?.idleKib[count], 1)] as [
          string,
          (n: string) => string,
        ],
    ),
    ['CONNECT setups per CPU-second', (n) => cell(n, 'connectPerCpuS', 0)],
  ];
  const v = r.versions;
  const lines = [
    `Run ${r.startedAt}${r.smoke ? ' (smoke)' : ''}: Node ${v.node} (OpenSSL ${v.nodeOpenssl}), nginx ${v.nginx}, client ${v.client}; ` +
      `${r.machine.cpus} × ${r.machine.model}; load average ${fmt(r.machine.loadBefore, 1)} → ${fmt(r.machine.loadAfter, 1)}.`,
    `Medians of ${String(r.config.rounds)} interleaved rounds; (n×) is the ratio to nginx in the same run. Direct echo RTT: p50 ${fmt(r.direct.p50Us / 1000, 3)} ms, p99 ${fmt(r.direct.p99Us / 1000, 3)} ms.`,
    '',
    `| figure | ${names.join(' | ')} |`,
    `|---|${names.map(() => '---').join('|')}|`,
    ...rows.map(([label, f]) => `| ${label} | ${names.map(f).join(' | ')} |`),
    '',
    `\`--workers 2\`: ${fmt(r.workers.twoWorkersPerS, 0)} new connections/s against ${fmt(r.workers.oneWorkerPerS, 0)} for one worker (${fmt(r.workers.ratio)}×; 4 parallel s_time clients on the same ${r.machine.cpus} cores). ` +
      `Gateway CPU per connection: ${fmt(r.workers.oneWorkerCpuMs)} ms with one worker, ${fmt(r.workers.twoWorkersCpuMs)} ms with two; the clients' own: ${fmt(r.workers.clientCpuMs)} ms, ` +
      `so ${r.machine.cpus} cores shared with them allow at most ${fmt(workersCeiling(r))}× one worker.`,
    '',
    '| must (issue 8) | target | this run | met |',
    '|---|---|---|---|',
    ...r.targets.map(
      (t) =>
        `| ${t.figure} | ${t.must} | ${fmt(t.value)} | ${t.met === undefined ? 'n/a' : t.met ? 'yes' : '**no**'} |`,
    ),
  ];
  return lines.join('\n');
}

/**
 * The most `--workers 2` can reach here: every core busy with two workers at the two-worker cost
 * plus the clients, against one worker's measured rate.
 */
function workersCeiling(r: BenchResult): number {
  const { twoWorkersCpuMs: two, clientCpuMs: client, oneWorkerPerS: one } = r.workers;
  if (two === undefined || client === undefined) return Number.NaN;
  return Math.min(2 * one, (r.machine.cpus * 1000) / (two + client)) / one;
}

const START = '<!-- bench-table:start (generated by bench/render-table.ts from bench/results/latest.json) -->';
const END = '<!-- bench-table:end -->';

export function writeDocsTable(
  r: BenchResult,
  docsPath = new URL('../docs/benchmarks.md', import.meta.url).pathname,
): void {
  const text = readFileSync(docsPath, 'utf8');
  const from = text.indexOf(START);
  const to = text.indexOf(END);
  if (from < 0 || to < from) throw new Error(`${docsPath} lacks the bench-table markers`);
  writeFileSync(docsPath, `${text.slice(0, from + START.length)}\n${renderTable(r)}\n${text.slice(to)}`);
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].replace(/^.*\/bench\//, '/bench/'))) {
  const file = process.argv[2] ?? new URL('results/latest.json', import.meta.url).pathname;
  writeDocsTable(JSON.parse(readFileSync(file, 'utf8')) as BenchResult);
}
