/**
 * Runs INSIDE a network namespace of its own (dns-stall.test.ts starts it under `unshare -n`):
 * dnsmasq on the system resolver's address (put on the namespace's loopback), a gateway, an
 * upstream and both clients. Prints one JSON line of facts for the test to assert on.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { Resolver } from 'node:dns/promises';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { subscribeRuntimeEvents } from '../../src/core/runtime-event.ts';
import { createHostResolver } from '../../src/upstream/resolve-host.ts';
import { startTcpEchoServer } from '../helpers/tcp-echo-server.ts';
import { startTestGateway } from '../helpers/test-gateway.ts';
import { createTestPki, type WrittenLeaf } from '../helpers/test-pki.ts';

const DNS_ADDRESS = process.env.EGW_TEST_DNS_ADDRESS ?? '127.0.0.53';
// Far above an allowed lookup's time even on a loaded machine, so the two are told apart clearly.
const TIMEOUT_MS = 4_000;
const PER_IDENTITY = 4;
const ATTACKERS = 12;
// Two waves: the second shows the first one's slots were given back after their timeouts; a third
// showed nothing more and cost another TIMEOUT_MS.
const ATTACK_ROUNDS = 2;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Outcome {
  status: number;
  proxyStatus: string;
  ms: number;
  echoed: boolean;
}

/** One CONNECT through the gateway; on 200, one round trip through the tunnel. Never throws. */
function connectOnce(port: number, client: WrittenLeaf, ca: Buffer, target: string): Promise<Outcome> {
  const started = performance.now();
  return new Promise((resolve) => {
    const socket = connect({
      host: '127.0.0.1',
      port,
      ca,
      cert: readFileSync(client.certPath),
      key: readFileSync(client.keyPath),
      servername: 'localhost',
    });
    let text = '';
    let status = 0;
    const done = (echoed: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      const proxyStatus = /proxy-status: ([^\r\n]*)/i.exec(text)?.[1] ?? '';
      resolve({ status, proxyStatus, ms: performance.now() - started, echoed });
    };
    const timer = setTimeout(() => done(false), 10_000);
    socket.on('error', () => done(false));
    socket.on('close', () => done(false));
    socket.once('secureConnect', () => socket.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`));
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString('latin1');
      if (status === 0 && text.includes('\r\n\r\n')) {
        status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? -1);
        if (status === 200) socket.write('ping');
        else done(false);
      } else if (status === 200 && text.endsWith('ping')) done(true);
    });
  });
}

/** dnsmasq answers the `good.test` zone itself and forwards `blackhole.test` to a sink that never replies. */
function startDnsmasq(listen: string, port: number, goodIp: string, sinkPort: number, ttl = 0): ChildProcess {
  const child = spawn(
    'dnsmasq',
    [
      '--keep-in-foreground',
      '--conf-file=/dev/null',
      '--no-resolv',
      '--no-hosts',
      '--bind-interfaces',
      `--listen-address=${listen}`,
      `--port=${port}`,
      '--pid-file=',
      `--local-ttl=${ttl}`,
      `--address=/good.test/${goodIp}`,
      `--server=/blackhole.test/127.0.0.2#${sinkPort}`,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  child.stderr?.resume();
  return child;
}

async function waitForAnswer(server: string, name: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const resolver = new Resolver({ timeout: 200, tries: 1 });
    resolver.setServers([server]);
    try {
      if ((await resolver.resolve4(name)).length > 0) return;
    } catch {}
    // Checked on every round, not only on errors: an empty answer must not loop forever either.
    if (Date.now() > deadline) throw new Error(`dnsmasq at ${server} never answered ${name}`);
    await sleep(100);
  }
}

const fdCount = () => readdirSync('/proc/self/fd').length;

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'egw-dns-stall-'));
  const sink = createSocket('udp4');
  let blackholed = 0;
  sink.on('message', () => {
    blackholed += 1; // received, never answered
  });
  await new Promise<void>((r) => sink.bind(0, '127.0.0.2', () => r()));
  const sinkPort = sink.address().port;
  const system = startDnsmasq(DNS_ADDRESS, 53, '127.0.0.1', sinkPort);
  // A second server only `resolver.servers` points at, with a different answer for good.test.
  const configured = startDnsmasq('127.0.0.1', 5353, '127.0.0.9', sinkPort, 30);
  const pki = await createTestPki();
  const echo = await startTcpEchoServer();
  try {
    await waitForAnswer(DNS_ADDRESS, 'good.test');
    await waitForAnswer('127.0.0.1:5353', 'good.test');
    const facts = await attack(pki, echo.port);
    // resolver.servers, and the positive cache for an answer with a TTL (30 s here).
    const outcomes: string[] = [];
    const unsubscribe = subscribeRuntimeEvents((event) => {
      if (event.type === 'dns-lookup') outcomes.push(event.outcome);
    });
    const configuredResolver = createHostResolver({}, { servers: ['127.0.0.1:5353'], timeoutMs: 1_000 });
    const viaServers = [await configuredResolver.resolve('good.test'), await configuredResolver.resolve('good.test')];
    unsubscribe();
    process.stdout.write(`${JSON.stringify({ ...facts, blackholed, viaServers, outcomes })}\n`);
  } finally {
    system.kill();
    configured.kill();
    sink.close();
    echo.close();
    pki.cleanup();
    rmSync(work, { recursive: true, force: true });
  }
}

type Pki = Awaited<ReturnType<typeof createTestPki>>;

function startGateway(pki: Pki) {
  return startTestGateway(pki, {
    listeners: [{ name: 'egress', listen: '127.0.0.1:0', mode: 'connect' }],
    rules: [
      {
        name: 'good',
        from: { namespaces: ['good'] },
        to: { hosts: ['good.test'], cidrs: ['127.0.0.0/8'] },
        action: 'allow',
      },
      { name: 'attacker', from: { namespaces: ['attacker'] }, to: { hosts: ['**.blackhole.test'] }, action: 'allow' },
    ],
    resolver: { timeout: `${TIMEOUT_MS}ms`, maxConcurrentPerIdentity: PER_IDENTITY, cacheEntries: 0 },
  });
}

/** Calls `read` every 25 ms until stopped; resolves with the largest value seen. */
function sampleMax(read: () => Promise<number>): { stop(): Promise<number> } {
  let max = 0;
  let sampling = true;
  const loop = (async () => {
    while (sampling) {
      max = Math.max(max, await read());
      await sleep(25);
    }
  })();
  return {
    async stop() {
      sampling = false;
      await loop;
      return max;
    },
  };
}

/** Waves of concurrent CONNECTs to distinct names under the black-holed zone. */
async function hammer(connectTo: (target: string) => Promise<Outcome>, results: Outcome[]): Promise<void> {
  for (let round = 0; round < ATTACK_ROUNDS; round += 1) {
    const wave = Array.from({ length: ATTACKERS }, (_, i) => connectTo(`n${round * ATTACKERS + i}.blackhole.test:443`));
    results.push(...(await Promise.all(wave)));
  }
}

async function attack(pki: Pki, echoPort: number) {
  const [good, attacker] = [await pki.workload('good', 'default'), await pki.workload('attacker', 'default')];
  const ca = readFileSync(pki.rootPath);
  const gw = await startGateway(pki);
  const port = gw.port('egress');
  const metric = async (name: string, outcome?: string) =>
    Number(
      (await gw.gateway.metricsRegistry.getSingleMetric(name)?.get())?.values.find(
        (v) => outcome === undefined || v.labels.outcome === outcome,
      )?.value ?? -1,
    );
  try {
    const target = `good.test:${echoPort}`;
    const before = await connectOnce(port, good, ca, target);
    // Warm-up done: count fds with the gateway idle, then attack.
    await sleep(200);
    const fdsBefore = fdCount();
    const sampler = sampleMax(() => metric('egw_dns_inflight'));
    const attackerResults: Outcome[] = [];
    const attackDone = hammer((to) => connectOnce(port, attacker, ca, to), attackerResults);
    const during: Outcome[] = [];
    await sleep(100);
    while (during.length < 40 && attackerResults.length < ATTACKERS * ATTACK_ROUNDS) {
      during.push(await connectOnce(port, good, ca, target));
      await sleep(50);
    }
    await attackDone;
    const inflightAtEnd = await metric('egw_dns_inflight');
    const maxInflight = await sampler.stop();
    await sleep(300);
    const fdsAfter = fdCount();
    const resolved = await metric('egw_dns_lookups_total', 'resolved');
    const records = gw.records.filter((r) => r.action === 'egress-rejected').map((r) => r.code);
    const counts = { resolved, maxInflight, inflightAtEnd, fdsBefore, fdsAfter };
    return { before, during, attackerResults, records, ...counts, timeoutMs: TIMEOUT_MS };
  } finally {
    await gw.close();
  }
}

await main();
