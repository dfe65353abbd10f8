import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Client } from 'undici';
import { parse, stringify } from 'yaml';
import { curlViaGateway } from '../helpers/curl.ts';
import { type GatewayFixture, startGatewayFixture } from '../helpers/gateway-fixture.ts';
import { waitUntil } from '../helpers/poll-until.ts';
import type { TestGateway } from '../helpers/test-gateway.ts';
import type { TestPki, WrittenLeaf } from '../helpers/test-pki.ts';
import { keptAliveClient, openTunnel } from '../helpers/tunnel-client.ts';
import { createOpensslCa, type OpensslCa } from './helpers/openssl-ca.ts';
import { CA_EXTENSIONS, opensslIssue, opensslRoot, svidExtensions } from './helpers/openssl-pki.ts';

async function statusOf(client: Client, url: string): Promise<number> {
  const response = await client.request({ path: url, method: 'GET' });
  await response.body.text();
  return response.statusCode;
}

/** A real gateway on loopback, real curl, CRLs from `openssl ca`; the CRL file is swapped and reloaded. */
describe('gateway: CRL revocation end to end', () => {
  let pki: TestPki;
  let ca: OpensslCa;
  let gw: TestGateway;
  let echoUrl: string;
  let crlPath: string;
  let fixture: GatewayFixture;

  before(async () => {
    fixture = await startGatewayFixture(
      async ({ pki }) => {
        ca = await createOpensslCa(pki.intermediate, join(pki.dir, 'ca'));
        crlPath = join(pki.dir, 'mesh-int.crl.pem');
        copyFileSync(ca.gencrl('initial'), crlPath);
        return {
          identity: {
            trustDomain: pki.trustDomain,
            trustAnchors: pki.intermediatePath,
            cert: pki.gateway.certPath,
            key: pki.gateway.keyPath,
            crls: [crlPath],
          },
          listeners: [{ name: 'egress', listen: '127.0.0.1:0', mode: 'connect' }],
          rules: [{ name: 'loop', to: { cidrs: ['127.0.0.0/8'] }, action: 'allow' }],
          admin: { watch: false },
        };
      },
      { tcpEchoes: 1 },
    );
    ({ pki, gw } = fixture);
    echoUrl = `http://127.0.0.1:${fixture.echoPort}/`;
  });
  after(async () => {
    await fixture?.close();
  });

  const curl = (client: WrittenLeaf) => curlViaGateway(gw.port('egress'), client, pki.rootPath, echoUrl, ['-p']);
  const admin = (path: string) => fetch(`http://127.0.0.1:${gw.gateway.adminAddress?.port}${path}`);

  async function rejectionOf(client: WrittenLeaf) {
    const before = gw.records.length;
    const result = await curl(client);
    assert.notEqual(result.code, 0, 'curl must fail');
    return gw.waitForRecord((r) => gw.records.indexOf(r) >= before && r.action === 'identity-rejected');
  }

  it('refuses a certificate a reloaded CRL revokes, audits it, and keeps serving the others', async () => {
    const kept = await pki.workload('shop', 'web');
    const revoked = await pki.workload('shop', 'api');
    const first = await curl(revoked);
    assert.equal(first.code, 0, `accepted before the CRL lists it: ${first.stderr}`);
    ca.revoke(revoked.leaf.certPem);
    copyFileSync(ca.gencrl('revoking'), crlPath);
    assert.deepEqual(await gw.gateway.reload(), { ok: true });
    const record = await rejectionOf(revoked);
    assert.equal(record.code, 'EGW_IDENTITY_REVOKED');
    assert.match(record.reason ?? '', /spiffe:\/\/cluster\.local\/ns\/shop\/sa\/api.*revoked/);
    const other = await curl(kept);
    assert.equal(other.code, 0, other.stderr);
    const ready = await admin('/readyz');
    assert.equal(ready.status, 200, JSON.stringify(await ready.clone().json()));
    assert.match(
      await (await admin('/metrics')).text(),
      /egw_crl_status\{issuer="O=test, CN=Test Mesh Intermediate",source="[^"]+",status="valid"\} 1/,
    );
  });

  it('reports a stale CRL in /readyz and the metrics, and with crlRequired refuses its chains', async () => {
    const client = await pki.workload('shop', 'web');
    copyFileSync(ca.gencrl('stale', { lastUpdate: '20250101000000Z', nextUpdate: '20250102000000Z' }), crlPath);
    assert.deepEqual(await gw.gateway.reload(), { ok: true });
    const ready = await admin('/readyz');
    assert.equal(ready.status, 503);
    const body = (await ready.json()) as { reasons: string[] };
    assert.ok(
      body.reasons.some((r) =>
        /CRL .*mesh-int\.crl\.pem of "O=test, CN=Test Mesh Intermediate" is stale: past its nextUpdate 2025-01-02/.test(
          r,
        ),
      ),
      JSON.stringify(body.reasons),
    );
    const metrics = await (await admin('/metrics')).text();
    assert.match(metrics, /egw_crl_status\{[^}]*status="stale"\} 0/);
    assert.match(metrics, /egw_crl_next_update_seconds\{[^}]*\} -\d/);
    // crlRequired false: reported only, the chain still passes.
    assert.equal((await curl(client)).code, 0);
    // The running configuration with identity.crlRequired added.
    const config = parse(readFileSync(gw.configPath, 'utf8')) as { identity: Record<string, unknown> };
    config.identity.crlRequired = true;
    writeFileSync(gw.configPath, stringify(config));
    assert.deepEqual(await gw.gateway.reload(), { ok: true });
    const record = await rejectionOf(client);
    assert.equal(record.code, 'EGW_IDENTITY_CRL_UNAVAILABLE');
    // A current CRL again: accepted under crlRequired, and ready.
    copyFileSync(ca.gencrl('fresh'), crlPath);
    assert.deepEqual(await gw.gateway.reload(), { ok: true });
    assert.equal((await curl(client)).code, 0);
    assert.equal((await admin('/readyz')).status, 200);
  });

  it('closes and audits the open tunnels of a certificate a reload revokes, and only those', async () => {
    const doomed = await pki.workload('shop', 'doomed');
    const spared = await pki.workload('shop', 'spared');
    const to = `127.0.0.1:${fixture.tcpEchoPort}`;
    const a = await openTunnel(gw.port('egress'), doomed, pki.rootPath, to);
    const b = await openTunnel(gw.port('egress'), spared, pki.rootPath, to);
    a.socket.write('ping');
    b.socket.write('ping');
    assert.equal((await a.waitFor(4)).toString(), 'ping');
    assert.equal((await b.waitFor(4)).toString(), 'ping');
    ca.revoke(doomed.leaf.certPem);
    copyFileSync(ca.gencrl('tunnel'), crlPath);
    assert.deepEqual(await gw.gateway.reload(), { ok: true });
    const closed = await gw.waitForRecord(
      (r) => r.action === 'egress-closed' && r.identity?.spiffeId === 'spiffe://cluster.local/ns/shop/sa/doomed',
    );
    assert.equal(closed.code, 'EGW_IDENTITY_REVOKED');
    assert.match(closed.reason ?? '', /^reload-denied: identity no longer trusted: .*shop\/sa\/doomed.*revoked/);
    await waitUntil(() => a.socket.destroyed, 5000, 'the revoked tunnel to close', 20);
    assert.ok(a.socket.destroyed, 'the revoked tunnel is closed');
    b.socket.write('pong');
    assert.equal((await b.waitFor(8)).toString(), 'pingpong', 'the other identity keeps its tunnel');
    b.close();
  });

  it("closes a revoked certificate's kept-alive absolute-form connection on reload; another identity's stays", async () => {
    const doomed = await pki.workload('shop', 'kept-doomed');
    const spared = await pki.workload('shop', 'kept-spared');
    const a = keptAliveClient(gw.port('egress'), doomed, pki.rootPath);
    const b = keptAliveClient(gw.port('egress'), spared, pki.rootPath);
    const permittedOf = (name: string) =>
      gw.records.filter(
        (r) => r.action === 'egress-permitted' && r.identity?.spiffeId === `spiffe://cluster.local/ns/shop/sa/${name}`,
      );
    try {
      assert.equal(await statusOf(a, echoUrl), 200, 'positive control: served before the CRL lists it');
      assert.equal(await statusOf(b, echoUrl), 200);
      const connectionId = permittedOf('kept-doomed')[0]?.connectionId;
      assert.ok(connectionId);
      ca.revoke(doomed.leaf.certPem);
      copyFileSync(ca.gencrl('kept-alive'), crlPath);
      assert.deepEqual(await gw.gateway.reload(), { ok: true });
      const ended = await gw.waitForRecord((r) => r.action === 'identity-rejected' && r.connectionId === connectionId);
      assert.equal(ended.code, 'EGW_IDENTITY_REVOKED');
      assert.match(ended.reason ?? '', /^reload-denied: identity no longer trusted: .*shop\/sa\/kept-doomed.*revoked/);
      // The other identity's connection was left open: its next request runs on the same one.
      assert.equal(await statusOf(b, echoUrl), 200);
      const spareds = permittedOf('kept-spared');
      assert.equal(spareds.length, 2);
      assert.equal(spareds[1]?.connectionId, spareds[0]?.connectionId, 'the same kept-alive connection');
      await assert.rejects(statusOf(a, echoUrl), 'the revoked connection is gone, and a new handshake is refused');
      assert.equal(permittedOf('kept-doomed').length, 1, 'nothing was forwarded for it after the reload');
    } finally {
      await a.close().catch(() => {});
      await b.close().catch(() => {});
    }
  });

  it('refuses, with its own code, an intermediate carrying an unknown critical extension', async () => {
    const root = opensslRoot(pki.dir, 'Ext Root');
    const plain = opensslIssue(pki.dir, root, 'Plain Int', CA_EXTENSIONS);
    const marked = opensslIssue(pki.dir, root, 'Marked Int', [...CA_EXTENSIONS, '1.2.3.4=critical,ASN1:NULL']);
    const id = 'spiffe://cluster.local/ns/shop/sa/web';
    const leafOf = (issuer: typeof plain, name: string): WrittenLeaf => {
      const leaf = opensslIssue(pki.dir, issuer, name, svidExtensions(id));
      const certPath = join(pki.dir, `${name}.chain.pem`);
      writeFileSync(certPath, `${leaf.pem}${issuer.pem}`);
      return { certPath, keyPath: leaf.keyPath, leafOnlyPath: leaf.certPath, leaf: undefined as never };
    };
    const ext = await fixture.startGateway(
      {
        listeners: [{ name: 'egress', listen: '127.0.0.1:0', mode: 'connect' }],
        rules: [{ name: 'loop', to: { cidrs: ['127.0.0.0/8'] }, action: 'allow' }],
      },
      { anchors: root.certPath },
    );
    try {
      const via = (client: WrittenLeaf) => curlViaGateway(ext.port('egress'), client, pki.rootPath, echoUrl, ['-p']);
      const ok = await via(leafOf(plain, 'plain-leaf'));
      assert.equal(ok.code, 0, ok.stderr);
      const before = ext.records.length;
      assert.notEqual((await via(leafOf(marked, 'marked-leaf'))).code, 0);
      const record = await ext.waitForRecord(
        (r) => ext.records.indexOf(r) >= before && r.action === 'identity-rejected',
      );
      assert.equal(record.code, 'EGW_IDENTITY_CRITICAL_EXTENSION', record.reason);
      assert.match(record.reason ?? '', /"O=test, CN=Marked Int" has critical extension 1\.2\.3\.4/);
    } finally {
      await ext.close();
    }
  });
});
