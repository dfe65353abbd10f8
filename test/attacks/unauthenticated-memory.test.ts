import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { startEchoServer } from '../../src/devtools/echo-server.ts';
import { curlViaGateway } from '../helpers/curl.ts';
import { hostileHandshake, junkCertificates, runHandshakes, startGatewayChild } from '../helpers/hostile-clients.ts';
import { writeTestConfig } from '../helpers/test-gateway.ts';
import { createTestPki } from '../helpers/test-pki.ts';

const MB = 1024 * 1024;

async function auditCount(path: string, code: string, atLeast: number): Promise<number> {
  const deadline = Date.now() + 10_000;
  let count = 0;
  while (Date.now() < deadline) {
    let text = '';
    try {
      text = readFileSync(path, 'utf8');
    } catch {}
    count = text.split('\n').filter((line) => line.includes(code)).length;
    if (count >= atLeast) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return count;
}

// Issue 9, found 1: every certificate a client presented was parsed and cached (4096 entries, no
// byte bound) before its chain was checked; 1,500 refused ~95 KB junk certificates took the RSS
// from 108 MB to 654 MB. Now sizes are checked on the DER lengths first and only validated
// certificates are cached.
describe('attack: large junk client certificates (unauthenticated memory)', () => {
  it('1,000 refused handshakes with ~95 KB junk certificates grow the gateway RSS by less than 50 MB, within 512 MiB', async () => {
    const pki = await createTestPki();
    const echo = await startEchoServer('127.0.0.1', 0);
    const echoPort = (echo.address() as AddressInfo).port;
    const auditPath = join(pki.dir, 'audit.log');
    const configPath = writeTestConfig(pki, {
      listeners: [{ name: 'egress', listen: '127.0.0.1:0', mode: 'connect' }],
      rules: [{ name: 'all', action: 'allow', to: { cidrs: ['127.0.0.0/8'] } }],
      admin: { listen: 'off', watch: false },
      audit: { sinks: [{ type: 'file', path: auditPath, format: 'ecs' }] },
      // Measures what each refused handshake costs: the source penalty would cut the attack short.
      limits: { handshakeFailuresPerSource: 0 },
    });
    // Issue 9 must-have 9: under a 512 MiB budget. The V8 heap is capped well below it (the rest is
    // the native budget: OpenSSL, buffers, code), and the peak RSS must stay under 512 MiB.
    const gateway = await startGatewayChild(configPath, ['--max-old-space-size=256']);
    const port = gateway.port('egress');
    try {
      const client = await pki.workload('default', 'app');
      const url = `http://127.0.0.1:${echoPort}/`;
      // Positive control: a legitimate client is served.
      const before = await curlViaGateway(port, client, pki.rootPath, url, ['-p']);
      assert.equal(before.code, 0, before.stderr);
      const junk = await junkCertificates(95_000);
      const one = () => hostileHandshake(port, junk.next(), junk.keyPem);
      await runHandshakes(50, 4, one); // warm-up: buffers, JIT, allocator arenas
      assert.ok((await auditCount(auditPath, 'EGW_IDENTITY_CHAIN_TOO_LARGE', 50)) >= 50, gateway.stderr());
      const rssBefore = gateway.memory().rss;
      await runHandshakes(1_000, 4, one);
      assert.ok((await auditCount(auditPath, 'EGW_IDENTITY_CHAIN_TOO_LARGE', 1_050)) >= 1_050, 'every one was refused');
      const rssAfter = gateway.memory().rss;
      const grown = (rssAfter - rssBefore) / MB;
      assert.ok(grown < 50, `RSS grew by ${grown.toFixed(1)} MB (${rssBefore / MB} -> ${rssAfter / MB} MB)`);
      const after = await curlViaGateway(port, client, pki.rootPath, url, ['-p']);
      assert.equal(after.code, 0, `still serving: ${after.stderr}`);
      const { peak } = gateway.memory();
      assert.ok(peak < 512 * MB, `peak RSS ${(peak / MB).toFixed(0)} MB is under the 512 MiB budget`);
    } finally {
      await gateway.stop();
      echo.close();
      rmSync(dirname(configPath), { recursive: true, force: true });
      pki.cleanup();
    }
  });
});
