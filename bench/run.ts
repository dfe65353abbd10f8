/**
 * `npm run bench`: the gateway against real peers in one run, side by side (docs/benchmarks.md).
 * Subjects: the gateway (tcp and connect mode), nginx `stream` when installed (mTLS against the
 * same anchor, proxy_bind), and the 10-line Node relay as the floor. Rounds alternate the subject
 * order (A B C, C B A, …) and every figure is the median over rounds; CPU is read from /proc for
 * each subject's whole process group, so the load generator is not counted.
 *
 *   npm run bench                      full run, writes bench/results/<time>.json + latest.json and
 *                                      regenerates the table in docs/benchmarks.md
 *   npm run bench -- --smoke           one short round (CI), writes nothing under bench/results/
 *   BENCH_NODE=/path/to/node           the Node that runs the subjects (default: this one)
 *   BENCH_COMPARE=/other/checkout      adds that checkout's gateway as `gateway-before`
 *   BENCH_ROUNDS, BENCH_SECONDS, BENCH_RELAY_MB, BENCH_PINGS, BENCH_CONNECTS, BENCH_TUNNELS=1000,10000
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestPki } from '../test/helpers/test-pki.ts';
import {
  type ClientIdentity,
  connectSetups,
  echoRtts,
  idleTunnelKib,
  median,
  newConnectionRate,
  percentile,
  relay,
  sTime,
  tcpOpen,
  tlsOpen,
  withCpu,
} from './measure.ts';
import { reapedChildrenCpuSeconds } from './proc-group.ts';
import { type BenchResult, renderTable, type SubjectFigures, targetsOf, writeDocsTable } from './render-table.ts';
import {
  buildDist,
  nginxVersion,
  SNAT,
  type Subject,
  spawnGroup,
  startGateway,
  startNginx,
  startNodeRelay,
  subjectNode,
  waitForOutput,
} from './subjects.ts';

const SMOKE = process.argv.includes('--smoke') || process.env.BENCH_SMOKE === '1';
const env = (name: string, full: number, smoke: number) => Number(process.env[name] ?? (SMOKE ? smoke : full));
const CFG = {
  rounds: env('BENCH_ROUNDS', 3, 1),
  seconds: env('BENCH_SECONDS', 4, 1),
  relayMb: env('BENCH_RELAY_MB', 256, 16),
  pings: env('BENCH_PINGS', 2000, 200),
  connects: env('BENCH_CONNECTS', 400, 40),
  tunnels: (process.env.BENCH_TUNNELS ?? (SMOKE ? '100' : '1000,10000')).split(',').map(Number),
};
const repo = new URL('..', import.meta.url).pathname;

type Sample = Partial<Record<keyof SubjectFigures, number>>;

async function round(subject: Subject, id: ClientIdentity, discardTarget: string): Promise<Sample> {
  const sample: Sample = {};
  const fresh = await retryLost(() => withCpu(subject.pgid, () => sTime(subject.ports.web, 'new', CFG.seconds, id)));
  sample.newMs = (fresh.cpu / fresh.value.connections) * 1000;
  const resumed = await retryLost(() =>
    withCpu(subject.pgid, () => sTime(subject.ports.web, 'reuse', CFG.seconds, id)),
  );
  sample.resumedMs = (resumed.cpu / resumed.value.connections) * 1000;
  sample.resumedShare = resumed.value.resumed / resumed.value.connections;
  const relayed = await withCpu(subject.pgid, () => relay(subject.ports.discard, CFG.relayMb, id));
  sample.cpuPerGb = relayed.cpu / (CFG.relayMb / 1024);
  sample.relayMbPerS = relayed.value;
  const tunnel = await tlsOpen(subject.ports.echo, id);
  const rtts = await echoRtts(tunnel, CFG.pings);
  tunnel.destroy();
  sample.p50Us = percentile(rtts, 50);
  sample.p99Us = percentile(rtts, 99);
  if (subject.connectPort) {
    const port = subject.connectPort;
    const setups = await withCpu(subject.pgid, () => connectSetups(port, CFG.connects, discardTarget, id));
    sample.connectPerCpuS = CFG.connects / setups.cpu;
  }
  return sample;
}

function versions(): Record<string, string> {
  const node = JSON.parse(
    execFileSync(
      subjectNode,
      ['-p', 'JSON.stringify({node: process.versions.node, openssl: process.versions.openssl})'],
      {
        encoding: 'utf8',
      },
    ),
  ) as { node: string; openssl: string };
  const sslClient = execFileSync('openssl', ['version'], { encoding: 'utf8' }).trim();
  return { node: node.node, nodeOpenssl: node.openssl, nginx: nginxVersion() ?? 'not installed', client: sslClient };
}

async function main(): Promise<void> {
  buildDist(repo);
  if (process.env.BENCH_COMPARE) buildDist(process.env.BENCH_COMPARE);
  const startedAt = new Date();
  const loadBefore = loadavg()[0] as number;
  const pki = await createTestPki();
  const dir = mkdtempSync(join(tmpdir(), 'egw-bench-'));
  const upstreamProcess = spawnGroup(subjectNode, ['--import', 'tsx', join(repo, 'bench/upstreams.ts')]);
  const [, discard, echo, web] = (await waitForOutput(upstreamProcess, /^(\d+) (\d+) (\d+)\n/m)).map(Number);
  const up = { discard: discard as number, echo: echo as number, web: web as number };
  const id: ClientIdentity = { leaf: await pki.workload('bookinfo', 'productpage'), caPath: pki.rootPath };
  const subjects: Subject[] = [];
  try {
    subjects.push(await startGateway(pki, up, dir));
    // BENCH_COMPARE=/path/to/an/older/checkout: its gateway as one more subject (before/after).
    if (process.env.BENCH_COMPARE)
      subjects.push(
        await startGateway(pki, up, dir, {
          repoDir: process.env.BENCH_COMPARE,
          name: 'gateway-before',
          snat: SNAT.gatewayBefore,
        }),
      );
    const nginx = await startNginx(pki, up, dir);
    if (nginx) subjects.push(nginx);
    subjects.push(await startNodeRelay(pki, up));
    const samples = new Map<string, Sample[]>(subjects.map((s) => [s.name, []]));
    // Warm-up (JIT, session caches), not measured.
    for (const s of subjects) await sTime(s.ports.web, 'new', 1, id);
    const direct: number[] = [];
    for (let r = 0; r < CFG.rounds; r++) {
      for (const s of r % 2 === 0 ? subjects : [...subjects].reverse()) {
        const sample = await round(s, id, `127.0.0.1:${up.discard}`);
        (samples.get(s.name) as Sample[]).push(sample);
        process.stderr.write(`round ${r + 1}/${CFG.rounds} ${s.name}: ${JSON.stringify(sample)}\n`);
      }
      const plain = await tcpOpen(up.echo);
      direct.push(...(await echoRtts(plain, CFG.pings)));
      plain.destroy();
    }
    const memory = new Map<string, Record<string, number>>();
    for (const count of CFG.tunnels) {
      for (const s of subjects) {
        const kib = await idleTunnelKib(s.pgid, s.ports.discard, count, id).catch(() => Number.NaN);
        memory.set(s.name, { ...memory.get(s.name), [String(count)]: kib });
        process.stderr.write(`${s.name}: ${kib.toFixed(1)} KiB per idle tunnel at ${count}\n`);
      }
    }
    const workers = await workersThroughput(subjects[0] as Subject, pki, up, dir, id);
    const figures: Record<string, SubjectFigures> = {};
    const directP50 = percentile(direct, 50);
    const directP99 = percentile(direct, 99);
    for (const s of subjects) {
      const list = samples.get(s.name) as Sample[];
      const m = (key: keyof SubjectFigures) => median(list.map((x) => x[key] ?? Number.NaN));
      figures[s.name] = {
        newMs: m('newMs'),
        resumedMs: m('resumedMs'),
        resumedShare: m('resumedShare'),
        cpuPerGb: m('cpuPerGb'),
        relayMbPerS: m('relayMbPerS'),
        p50Us: m('p50Us'),
        p99Us: m('p99Us'),
        addedP50Ms: (m('p50Us') - directP50) / 1000,
        addedP99Ms: (m('p99Us') - directP99) / 1000,
        connectPerCpuS: m('connectPerCpuS'),
        idleKib: memory.get(s.name) ?? {},
      };
    }
    const result: BenchResult = {
      startedAt: startedAt.toISOString(),
      smoke: SMOKE,
      config: CFG,
      machine: { cpus: cpus().length, model: cpus()[0]?.model ?? '', loadBefore, loadAfter: loadavg()[0] as number },
      versions: versions(),
      direct: { p50Us: directP50, p99Us: directP99 },
      subjects: figures,
      workers,
      targets: [],
    };
    result.targets = targetsOf(result);
    process.stdout.write(`\n${renderTable(result)}\n`);
    if (!SMOKE) {
      const out = join(repo, 'bench/results');
      mkdirSync(out, { recursive: true });
      const text = `${JSON.stringify(result, null, 2)}\n`;
      writeFileSync(join(out, `${startedAt.toISOString().replace(/[:.]/g, '-')}.json`), text);
      writeFileSync(join(out, 'latest.json'), text);
      if (process.env.BENCH_WRITE_DOCS !== '0') writeDocsTable(result);
    }
  } finally {
    for (const s of subjects) s.stop();
    try {
      process.kill(-(upstreamProcess.pid as number), 'SIGKILL');
    } catch {}
    rmSync(dir, { recursive: true, force: true });
    pki.cleanup();
  }
}

/**
 * Measures again when an `s_time` client stopped without its summary. Now and then one does,
 * against nginx and the gateway alike (docs/benchmarks.md, optimisation 6): that measurement is
 * thrown away whole, never counted, and the run goes on. A third loss in a row ends the run.
 */
async function retryLost<T>(measure: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await measure();
    } catch (error) {
      if (attempt >= 3 || !String(error).includes('s_time')) throw error;
      console.log(`an s_time client stopped without its summary; measuring again (${attempt})`);
    }
  }
}

/** New connections per wall second: one gateway worker against `--workers 2`, alternating. */
async function workersThroughput(
  one: Subject,
  pki: Awaited<ReturnType<typeof createTestPki>>,
  up: { discard: number; echo: number; web: number },
  dir: string,
  id: ClientIdentity,
): Promise<BenchResult['workers']> {
  const two = await startGateway(pki, up, dir, { workers: 2, snat: SNAT.workers });
  try {
    await sTime(two.ports.web, 'new', 1, id);
    const runs: Record<'one' | 'two', Array<{ rate: number; cpuMs: number; clientMs: number }>> = { one: [], two: [] };
    for (let r = 0; r < Math.max(1, CFG.rounds - 1); r++) {
      const order = r % 2 === 0 ? (['one', 'two'] as const) : (['two', 'one'] as const);
      for (const key of order) {
        const s = key === 'one' ? one : two;
        runs[key].push(
          await retryLost(async () => {
            const clientBefore = reapedChildrenCpuSeconds();
            const { value: rate, cpu } = await withCpu(s.pgid, () =>
              newConnectionRate(s.ports.web, CFG.seconds, 4, id),
            );
            const connections = rate * CFG.seconds;
            const clientMs = ((reapedChildrenCpuSeconds() - clientBefore) * 1000) / connections;
            return { rate, cpuMs: (cpu * 1000) / connections, clientMs };
          }),
        );
      }
    }
    const med = (key: 'one' | 'two', f: 'rate' | 'cpuMs' | 'clientMs') => median(runs[key].map((x) => x[f]));
    return {
      oneWorkerPerS: med('one', 'rate'),
      twoWorkersPerS: med('two', 'rate'),
      ratio: med('two', 'rate') / med('one', 'rate'),
      oneWorkerCpuMs: med('one', 'cpuMs'),
      twoWorkersCpuMs: med('two', 'cpuMs'),
      clientCpuMs: med('one', 'clientMs'),
    };
  } finally {
    two.stop();
  }
}

await main();
