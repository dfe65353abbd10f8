import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { curlViaGateway } from '../helpers/curl.ts';
import {
  type FixtureTargets,
  type GatewayFixture,
  startFixtureTargets,
  startGatewayFixture,
} from '../helpers/gateway-fixture.ts';
import { sClient } from '../helpers/openssl-client.ts';
import type { TestGateway } from '../helpers/test-gateway.ts';
import type { TestPki, WrittenLeaf } from '../helpers/test-pki.ts';
import { openTunnel } from '../helpers/tunnel-client.ts';

const TOKEN = 'test-admin-token-0123456789';

describe('admin API', () => {
  let pki: TestPki;
  let gw: TestGateway;
  let echoPort: number;
  let bookinfo: WrittenLeaf;
  let other: WrittenLeaf;
  let admin: string;
  let fixture: GatewayFixture;

  before(async () => {
    fixture = await startGatewayFixture(async ({ pki }) => {
      bookinfo = await pki.workload('bookinfo', 'productpage');
      other = await pki.workload('sm-apigw-a', 'default');
      return {
        listeners: [{ name: 'egress', listen: '127.0.0.1:0', mode: 'connect', snat: '127.0.0.2' }],
        rules: [
          {
            name: 'bookinfo-egress',
            from: { namespaces: ['bookinfo'] },
            to: { cidrs: ['127.0.0.0/8'] },
            action: 'allow',
          },
        ],
        admin: { listen: '127.0.0.1:0', token: TOKEN, watch: false },
      };
    });
    ({ pki, gw, echoPort } = fixture);
    admin = `http://127.0.0.1:${gw.gateway.adminAddress?.port}`;
    await curlViaGateway(gw.port('egress'), bookinfo, pki.rootPath, `http://127.0.0.1:${echoPort}/`, ['-p']);
    await curlViaGateway(gw.port('egress'), other, pki.rootPath, `http://127.0.0.1:${echoPort}/`, ['-p']);
    await sClient(gw.port('egress'), { caPath: pki.rootPath, waitForServerClose: true });
    await gw.waitForRecord((r) => r.code === 'EGW_IDENTITY_NO_CERT');
    await gw.waitForRecord((r) => r.action === 'egress-closed');
  });
  after(async () => {
    await fixture?.close();
  });

  const get = async (path: string, token: string | null = TOKEN) => {
    const response = await request(`${admin}${path}`, token ? { headers: { authorization: `Bearer ${token}` } } : {});
    return { status: response.statusCode, text: await response.body.text(), headers: response.headers };
  };
  const post = async (path: string, body?: unknown, token?: string) => {
    const response = await request(`${admin}${path}`, {
      method: 'POST',
      headers: {
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...(token ? { authorization: `Bearer ${token}` } : {}),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: response.statusCode, json: (await response.body.json()) as Record<string, unknown> };
  };

  it('GET /healthz answers 200 while the process is alive', async () => {
    const { status, text } = await get('/healthz');
    assert.equal(status, 200);
    assert.deepEqual(JSON.parse(text), { status: 'alive' });
  });

  it('GET /readyz answers 200 with listeners bound and certificates valid', async () => {
    const { status, text } = await get('/readyz');
    assert.equal(status, 200, text);
    assert.deepEqual(JSON.parse(text), { status: 'ready', reasons: [] });
  });

  it('GET /metrics exposes connections, decisions, handshake failures, bytes and certificate expiry', async () => {
    const { status, text, headers } = await get('/metrics');
    assert.equal(status, 200);
    assert.match(String(headers['content-type']), /text\/plain/);
    assert.match(text, /^egw_connections_total\{listener="egress",decision="permitted"\} 1$/m);
    assert.match(text, /^egw_connections_total\{listener="egress",decision="rejected"\} 1$/m);
    assert.match(text, /^egw_policy_decisions_total\{rule="bookinfo-egress",decision="allow"\} 1$/m);
    assert.match(text, /^egw_policy_decisions_total\{rule="",decision="deny"\} 1$/m);
    assert.match(text, /^egw_handshake_failures_total\{listener="egress",code="EGW_IDENTITY_NO_CERT"\} 1$/m);
    assert.match(text, /^egw_bytes_total\{listener="egress",direction="out"\} [1-9]\d*$/m);
    assert.match(
      text,
      /^egw_certificate_expiry_seconds\{role="gateway",subject="spiffe:\/\/cluster\.local\/ns\/bookinfo\/sa\/bigip-proxy"\} \d+/m,
    );
    assert.match(text, /^egw_active_tunnels\{listener="egress"\} 0$/m);
    assert.match(text, /^egw_reloads_total\{result="ok"\} 0$/m);
  });

  it('GET /stats gives per-listener counters with rejections by reason', async () => {
    const stats = JSON.parse((await get('/stats')).text);
    const egress = stats.listeners.egress;
    assert.equal(egress.accepted, 1);
    assert.equal(egress.rejected, 1);
    assert.equal(egress.identityRejected, 1);
    assert.equal(egress.rejectedByReason.EGW_POLICY_DENIED, 1);
    assert.equal(egress.rejectedByReason.EGW_IDENTITY_NO_CERT, 1);
    assert.ok(egress.bytesOut > 0);
  });

  it('GET /connections lists a live tunnel with identity, destination, SNAT, bytes and age', async () => {
    const tunnel = await openTunnel(gw.port('egress'), bookinfo, pki.rootPath, `127.0.0.1:${echoPort}`);
    try {
      tunnel.socket.write('GET /live HTTP/1.1\r\nHost: x\r\n\r\n');
      await tunnel.waitFor(10);
      const list = JSON.parse((await get('/connections')).text);
      assert.equal(list.length, 1);
      assert.equal(list[0].identity, 'spiffe://cluster.local/ns/bookinfo/sa/productpage');
      assert.equal(list[0].destination, `127.0.0.1:${echoPort}`);
      assert.equal(list[0].snat, '127.0.0.2');
      assert.ok(list[0].bytesToClient > 0);
      assert.equal(typeof list[0].ageSeconds, 'number');
    } finally {
      tunnel.close();
    }
  });

  it('GET /config shows the effective configuration with secrets redacted', async () => {
    const { text } = await get('/config');
    const config = JSON.parse(text);
    assert.equal(config.admin.token, '<redacted>');
    assert.equal(config.listeners[0].name, 'egress');
    assert.equal(config.listeners[0].snat, '127.0.0.2');
    assert.deepEqual(config.pendingRestart, [], 'nothing waits for a restart while the file is as started');
    assert.ok(!text.includes(TOKEN));
  });

  it('GET /stats, /connections and /config require the bearer token; probes and metrics do not', async () => {
    for (const path of ['/stats', '/connections', '/config']) assert.equal((await get(path, null)).status, 401, path);
    for (const path of ['/healthz', '/readyz', '/metrics']) assert.equal((await get(path, null)).status, 200, path);
    const lowerCase = await request(`${admin}/stats`, { headers: { authorization: `bearer ${TOKEN}` } });
    assert.equal(lowerCase.statusCode, 200, 'the auth scheme is case-insensitive');
    await lowerCase.body.dump();
  });

  it('POST routes require the bearer token', async () => {
    assert.equal((await post('/reload')).status, 401);
    assert.equal((await post('/reload', undefined, 'wrong-token-wrong-token')).status, 401);
    const ok = await post('/reload', undefined, TOKEN);
    assert.equal(ok.status, 200);
    assert.equal(ok.json.ok, true);
  });

  it('POST /policy/check answers like the CLI', async () => {
    const allow = await post(
      '/policy/check',
      { spiffeId: 'spiffe://cluster.local/ns/bookinfo/sa/productpage', dest: `127.0.0.1:${echoPort}` },
      TOKEN,
    );
    assert.equal(allow.status, 200);
    assert.equal(allow.json.allow, true);
    assert.equal(allow.json.rule, 'bookinfo-egress');
    assert.match(
      String(allow.json.summary),
      /^ALLOW listener=egress rule=bookinfo-egress ip=127\.0\.0\.1 snat=127\.0\.0\.2/,
    );
    const deny = await post(
      '/policy/check',
      { spiffeId: 'spiffe://cluster.local/ns/other/sa/x', dest: 'a.example.com:443' },
      TOKEN,
    );
    assert.equal(deny.json.allow, false);
    assert.equal(deny.json.code, 'EGW_POLICY_DENIED');
  });

  it('POST /policy/check validates its body', async () => {
    const missing = await post('/policy/check', { dest: 'a:1' }, TOKEN);
    assert.equal(missing.status, 400);
    const badId = await post('/policy/check', { spiffeId: 'spiffe://cluster.local/ns/../x', dest: 'a:1' }, TOKEN);
    assert.equal(badId.status, 400);
    assert.equal(badId.json.error, 'EGW_IDENTITY_SPIFFE_ID_INVALID');
  });

  it('a reload of a broken file answers 422, keeps serving, and counts a failed reload', async () => {
    const original = readFileSync(gw.configPath, 'utf8');
    writeFileSync(gw.configPath, `${original}\nrules: [{ name: broken, action: maybe }]\n`);
    try {
      const result = await post('/reload', undefined, TOKEN);
      assert.equal(result.status, 422);
      assert.match(String(result.json.error), /EGW_CONFIG_INVALID/);
      const still = await curlViaGateway(gw.port('egress'), bookinfo, pki.rootPath, `http://127.0.0.1:${echoPort}/`, [
        '-p',
      ]);
      assert.equal(still.code, 0, 'the old rules still apply');
      assert.match((await get('/metrics')).text, /^egw_reloads_total\{result="failed"\} 1$/m);
    } finally {
      writeFileSync(gw.configPath, original);
    }
  });
});

describe('admin API readiness', () => {
  // One PKI for the suite, no target: each test starts its own gateway on it.
  let targets: FixtureTargets;
  before(async () => {
    targets = await startFixtureTargets({ httpEchoes: [] });
  });
  after(async () => {
    await targets?.close();
  });

  it('answers 503 naming the certificate that expires within the configured window', async () => {
    const gw = await targets.startGateway({
      listeners: [{ name: 'egress', listen: '127.0.0.1:0', mode: 'connect' }],
      admin: { listen: '127.0.0.1:0', certExpiryWindow: '48h', watch: false },
    });
    try {
      const response = await request(`http://127.0.0.1:${gw.gateway.adminAddress?.port}/readyz`);
      assert.equal(response.statusCode, 503);
      const body = (await response.body.json()) as { reasons: string[] };
      assert.match(body.reasons.join(' '), /gateway certificate expires at .*, within admin\.certExpiryWindow/);
    } finally {
      await gw.close();
    }
  });

  it('answers 503 naming the gateway certificate once it has expired', async () => {
    const { pki } = targets;
    const expired = await pki.issue('gateway-expired', {
      spiffeIds: ['spiffe://cluster.local/ns/bookinfo/sa/bigip-proxy'],
      notBefore: new Date(Date.now() - 48 * 3_600_000),
      notAfter: new Date(Date.now() - 3_600_000),
    });
    const gw = await targets.startGateway({
      identity: {
        trustDomain: 'cluster.local',
        trustAnchors: pki.intermediatePath,
        cert: expired.certPath,
        key: expired.keyPath,
      },
      listeners: [{ name: 'egress', listen: '127.0.0.1:0', mode: 'connect' }],
      admin: { listen: '127.0.0.1:0', watch: false },
    });
    try {
      const response = await request(`http://127.0.0.1:${gw.gateway.adminAddress?.port}/readyz`);
      assert.equal(response.statusCode, 503);
      const body = (await response.body.json()) as { reasons: string[] };
      assert.match(body.reasons.join(' '), /gateway certificate expired at/);
    } finally {
      await gw.close();
    }
  });

  it('serves POST routes to loopback clients when no token is configured', async () => {
    const gw = await targets.startGateway({
      listeners: [{ name: 'egress', listen: '127.0.0.1:0', mode: 'connect' }],
      admin: { listen: '127.0.0.1:0', watch: false },
    });
    try {
      const response = await request(`http://127.0.0.1:${gw.gateway.adminAddress?.port}/reload`, { method: 'POST' });
      assert.equal(response.statusCode, 200);
      await response.body.dump();
    } finally {
      await gw.close();
    }
  });
});
