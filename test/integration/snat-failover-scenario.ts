/**
 * Runs INSIDE a network namespace of its own (snat-failover.test.ts starts it under `unshare -n`
 * with 192.0.2.1, .10 and .11 on the namespace's loopback): an echo server on 192.0.2.1, a gateway
 * whose SNAT pool is [192.0.2.10, 192.0.2.11], one workload that hashes to .10. It removes .10
 * from the host between two requests and prints one JSON line of facts for the test to assert on.
 */
import { spawnSync } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import { startEchoServer } from '../../src/devtools/echo-server.ts';
import { curlViaGateway } from '../helpers/curl.ts';
import { serviceAccountsOnEachAddress } from '../helpers/snat-identities.ts';
import { startTestGateway, type TestGateway } from '../helpers/test-gateway.ts';
import { createTestPki, type TestPki, type WrittenLeaf } from '../helpers/test-pki.ts';

const POOL = ['192.0.2.10', '192.0.2.11'];

async function request(gw: TestGateway, pki: TestPki, client: WrittenLeaf, url: string) {
  const mark = gw.records.length;
  const result = await curlViaGateway(gw.port('egress'), client, pki.rootPath, url, ['-p']);
  const seen = result.code === 0 ? (JSON.parse(result.stdout) as { peerAddress: string }).peerAddress : null;
  const record = await gw.waitForRecord((r) => gw.records.indexOf(r) >= mark && r.action !== 'egress-closed');
  return { code: result.code, stderr: result.stderr, seen, action: record.action, snat: record.snat?.ip ?? null };
}

async function failoverMetric(gw: TestGateway): Promise<string[]> {
  const text = await (await fetch(`http://127.0.0.1:${gw.gateway.adminAddress?.port}/metrics`)).text();
  return text.split('\n').filter((line) => line.startsWith('egw_snat_failovers_total{'));
}

async function main(): Promise<void> {
  const pki = await createTestPki();
  const echo = await startEchoServer('192.0.2.1', 0);
  const url = `http://192.0.2.1:${(echo.address() as AddressInfo).port}/`;
  const [onFirst] = serviceAccountsOnEachAddress(pki.trustDomain, 'bookinfo');
  const client = await pki.workload('bookinfo', onFirst);
  const gw = await startTestGateway(pki, {
    listeners: [{ name: 'egress', listen: '127.0.0.1:0', mode: 'connect', snat: POOL }],
    rules: [{ name: 'echo', to: { cidrs: ['192.0.2.1/32'] }, action: 'allow' }],
  });
  try {
    const before = await request(gw, pki, client, url);
    const metricBefore = await failoverMetric(gw);
    const removed = spawnSync('ip', ['addr', 'del', `${POOL[0]}/32`, 'dev', 'lo'], { encoding: 'utf8' });
    const after = await request(gw, pki, client, url);
    const again = await request(gw, pki, client, url);
    const metricAfter = await failoverMetric(gw);
    // Every address is test-bound on reload too: with .10 gone the reload fails and names it.
    const reload = await gw.gateway.reload();
    const facts = { before, metricBefore, removed: removed.status, after, again, metricAfter, reload };
    process.stdout.write(`${JSON.stringify(facts)}\n`);
  } finally {
    await gw.close();
    echo.close();
    pki.cleanup();
  }
}

await main();
