/**
 * `node --import tsx bench/hostile-identity.ts`: issue 9 items 1, 2 and 9 against a gateway child
 * process, loopback only, bounded in count. Prints figures; asserts nothing (timing is noisy here).
 *
 *   junk:       RSS after N refused handshakes with ~95 KB junk certificates (changing nonce)
 *   look-alike: gateway CPU per refused look-alike chain (8 self-issued CA certs + leaf, all signed
 *               by one RSA-16384 key with a 64-bit public exponent)
 *   p99:        latency of a legitimate CONNECT (curl) while 3 look-alike clients attack
 *   memory:     the gateway runs under `--max-old-space-size=BENCH_HEAP_MB` (default 256); its
 *               peak RSS (VmHWM) must stay under 512 MiB and it must still serve at the end
 *
 * The RSA-16384 key is generated once (minutes) and cached at $BENCH_RSA16384_KEY or in tmpdir.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
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
const configPath = writeTestConfig(pki, {
  listeners: [{ name: 'egress', listen: '127.0.0.1:0', mode: 'connect' }],
  rules: [{ name: 'loopback', action: 'allow', to: { cidrs: ['127.0.0.0/8'] } }],
  admin: { listen: 'off', watch: false },
});
const gateway = await startGatewayChild(configPath, [`--max-old-space-size=${HEAP_MB}`]);
const port = gateway.port('egress');
const client = await pki.workload('default', 'app');
const legit = async () => {
  const r = await curlViaGateway(port, client, pki.rootPath, url, ['-p', '-o', '/dev/null', '-w', '%{time_total}']);
  if (r.code !== 0) throw new Error(`legitimate CONNECT failed: ${r.stderr}`);
  return Number(r.stdout) * 1000;
};
try {
  await legit();
  const junk = await junkCertificates(95_000);
  const rss0 = gateway.memory().rss;
  await runHandshakes(JUNK, 4, () => hostileHandshake(port, junk.next(), junk.keyPem));
  console.log(
    `junk: ${JUNK} refused 95 KB handshakes, RSS ${(rss0 / MB).toFixed(0)} -> ${(gateway.memory().rss / MB).toFixed(0)} MB`,
  );

  const { chainPath, leafKeyPath } = lookAlikeChain(dir, rsa16384Key());
  const chain = readFileSync(chainPath);
  const leafKey = readFileSync(leafKeyPath);
  const attack = () => hostileHandshake(port, chain, leafKey);
  await runHandshakes(5, 1, attack); // warm-up
  const cpu0 = gateway.cpuMs();
  await runHandshakes(LOOK_ALIKES, 1, attack);
  const perAttack = (gateway.cpuMs() - cpu0) / LOOK_ALIKES;
  console.log(`look-alike: ${perAttack.toFixed(1)} ms gateway CPU per refused connection (${LOOK_ALIKES} sequential)`);

  const quiet: number[] = [];
  for (let i = 0; i < LEGIT; i++) quiet.push(await legit());
  let attacking = true;
  const attackers = Array.from({ length: 3 }, async () => {
    while (attacking) await attack();
  });
  const loaded: number[] = [];
  for (let i = 0; i < LEGIT; i++) loaded.push(await legit());
  attacking = false;
  await Promise.all(attackers);
  console.log(
    `p99 legitimate CONNECT (curl time_total): ${percentile(quiet, 99).toFixed(1)} ms quiet, ` +
      `${percentile(loaded, 99).toFixed(1)} ms with 3 look-alike attackers (p50 ${percentile(loaded, 50).toFixed(1)} ms)`,
  );
  await legit();
  const peak = gateway.memory().peak;
  console.log(
    `memory: --max-old-space-size=${HEAP_MB}, peak RSS ${(peak / MB).toFixed(0)} MB (${peak < 512 * MB ? 'under' : 'OVER'} 512 MiB), still serving`,
  );
} finally {
  await gateway.stop();
  echo.close();
  rmSync(dir, { recursive: true, force: true });
  pki.cleanup();
}
