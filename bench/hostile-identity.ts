/**
 * `node --import tsx bench/hostile-identity.ts`: issue 9 items 1, 2 and 9 against a gateway child
 * process, loopback only, bounded in count. Prints figures; asserts nothing (timing is noisy here).
 *
 *   junk:       RSS after N refused handshakes with ~95 KB junk certificates (changing nonce)
 *   look-alike: gateway CPU per refused look-alike chain (8 self-issued CA certs + leaf, all signed
 *               by one RSA-16384 key with a 64-bit public exponent)
 *   p99:        latency of a legitimate CONNECT (curl, from 127.0.0.1) while 3 look-alike clients
 *               attack from three other sources (127.0.0.11-13): once with the source penalty off
 *               (every attack reaches TLS), once on a second gateway with the default penalty
 *               (limits.handshakeFailuresPerSource); the measurement starts with the attack, so the
 *               failures before each source is penalised are in it
 *   memory:     the gateway runs under `--max-old-space-size=BENCH_HEAP_MB` (default 256); its
 *               peak RSS (VmHWM) must stay under 512 MiB and it must still serve at the end
 *
 * The RSA-16384 key is generated once (minutes) and cached at $BENCH_RSA16384_KEY or in tmpdir.
 * BENCH_JUNK=0 skips the junk phase.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEchoServer } from '../src/devtools/echo-server.ts';
import { curlViaGateway } from '../test/helpers/curl.ts';
import {
  hostileHandshake,
  junkCertificates,
  lookAlikeChain,
  runHandshakes,
  startGatewayChild,
} from '../test/helpers/hostile-clients.ts';
import { writeTestConfig } from '../test/helpers/test-gateway.ts';
import { createTestPki } from '../test/helpers/test-pki.ts';

const JUNK = Number(process.env.BENCH_JUNK ?? 1000);
const LOOK_ALIKES = Number(process.env.BENCH_LOOK_ALIKES ?? 40);
const LEGIT = Number(process.env.BENCH_LEGIT ?? 100);
const HEAP_MB = Number(process.env.BENCH_HEAP_MB ?? 256);
const MB = 1024 * 1024;
const ATTACKERS = ['127.0.0.11', '127.0.0.12', '127.0.0.13'];
/** The penalty starts after each source's first failures: the rest of the samples show the steady state. */
const STEADY_AFTER = Math.floor(LEGIT / 5);

function rsa16384Key(): string {
  const path = process.env.BENCH_RSA16384_KEY ?? join(tmpdir(), 'egw-bench-rsa16384.pem');
  if (existsSync(path)) return path;
  const started = Date.now();
  execFileSync(
    'openssl',
    ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:16384'].concat([
      '-pkeyopt',
      'rsa_keygen_pubexp:18446744073709551557',
      '-out',
      path,
    ]),
  );
  console.log(`generated RSA-16384 (e = 2^64-59) in ${((Date.now() - started) / 1000).toFixed(0)} s: ${path}`);
  return path;
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN;
}

const pki = await createTestPki();
const dir = mkdtempSync(join(tmpdir(), 'egw-hostile-'));
const echo = await startEchoServer('127.0.0.1', 0);
const url = `http://127.0.0.1:${(echo.address() as AddressInfo).port}/`;
const client = await pki.workload('default', 'app');

/** A gateway child on port 0 (read back from its log); `penalty: false` turns the source penalty off. */
async function startGateway(penalty: boolean) {
  const configPath = writeTestConfig(pki, {
    listeners: [{ name: 'egress', listen: '127.0.0.1:0', mode: 'connect' }],
    rules: [{ name: 'loopback', action: 'allow', to: { cidrs: ['127.0.0.0/8'] } }],
    admin: { listen: 'off', watch: false },
    ...(penalty ? {} : { limits: { handshakeFailuresPerSource: 0 } }),
  });
  const child = await startGatewayChild(configPath, [`--max-old-space-size=${HEAP_MB}`]);
  const port = child.port('egress');
  const legit = async () => {
    const r = await curlViaGateway(port, client, pki.rootPath, url, ['-p', '-o', '/dev/null', '-w', '%{time_total}']);
    if (r.code !== 0) throw new Error(`legitimate CONNECT failed: ${r.stderr}`);
    return Number(r.stdout) * 1000;
  };
  return { port, child, legit };
}

/** LEGIT sequential CONNECTs, quiet, then while one look-alike client per ATTACKERS source loops. */
async function legitP99(gw: Awaited<ReturnType<typeof startGateway>>, chain: Buffer, leafKey: Buffer) {
  const quiet: number[] = [];
  for (let i = 0; i < LEGIT; i++) quiet.push(await gw.legit());
  let attacking = true;
  let attempts = 0;
  const attackers = ATTACKERS.map(async (source) => {
    while (attacking) {
      attempts += 1;
      await hostileHandshake(gw.port, chain, leafKey, source);
    }
  });
  const cpu0 = gw.child.cpuMs();
  const loaded: number[] = [];
  for (let i = 0; i < LEGIT; i++) loaded.push(await gw.legit());
  const cpu = gw.child.cpuMs() - cpu0;
  attacking = false;
  await Promise.all(attackers);
  return { quiet, loaded, attempts, cpu };
}

function report(label: string, r: Awaited<ReturnType<typeof legitP99>>): void {
  console.log(
    `p99 legitimate CONNECT (curl time_total), ${label}: ${percentile(r.quiet, 99).toFixed(1)} ms quiet, ` +
      `${percentile(r.loaded, 99).toFixed(1)} ms with 3 look-alike attackers from 3 sources ` +
      `(p50 ${percentile(r.loaded, 50).toFixed(1)} ms; after the first ${STEADY_AFTER} requests ` +
      `p99 ${percentile(r.loaded.slice(STEADY_AFTER), 99).toFixed(1)} ms; ` +
      `${r.attempts} attacker connections, gateway CPU ${r.cpu.toFixed(0)} ms)`,
  );
}

const gateway = await startGateway(false);
const penalised = await startGateway(true);
try {
  await gateway.legit();
  await penalised.legit();
  const junk = await junkCertificates(95_000);
  const rss0 = gateway.child.memory().rss;
  await runHandshakes(JUNK, 4, () => hostileHandshake(gateway.port, junk.next(), junk.keyPem));
  if (JUNK > 0)
    console.log(
      `junk: ${JUNK} refused 95 KB handshakes, RSS ${(rss0 / MB).toFixed(0)} -> ${(gateway.child.memory().rss / MB).toFixed(0)} MB`,
    );

  const { chainPath, leafKeyPath } = lookAlikeChain(dir, rsa16384Key());
  const chain = readFileSync(chainPath);
  const leafKey = readFileSync(leafKeyPath);
  const attack = () => hostileHandshake(gateway.port, chain, leafKey);
  await runHandshakes(5, 1, attack); // warm-up
  const cpu0 = gateway.child.cpuMs();
  await runHandshakes(LOOK_ALIKES, 1, attack);
  const perAttack = (gateway.child.cpuMs() - cpu0) / LOOK_ALIKES;
  console.log(`look-alike: ${perAttack.toFixed(1)} ms gateway CPU per refused connection (${LOOK_ALIKES} sequential)`);

  report('penalty off', await legitP99(gateway, chain, leafKey));
  report('default penalty', await legitP99(penalised, chain, leafKey));
  await gateway.legit();
  await penalised.legit();
  const peak = gateway.child.memory().peak;
  console.log(
    `memory: --max-old-space-size=${HEAP_MB}, peak RSS ${(peak / MB).toFixed(0)} MB (${peak < 512 * MB ? 'under' : 'OVER'} 512 MiB), still serving`,
  );
  console.log(
    `load average at the end: ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
} finally {
  await gateway.child.stop();
  await penalised.child.stop();
  echo.close();
  rmSync(dir, { recursive: true, force: true });
  pki.cleanup();
}
