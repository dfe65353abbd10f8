import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { curlViaGateway } from '../helpers/curl.ts';
import { type GatewayFixture, startGatewayFixture } from '../helpers/gateway-fixture.ts';
import { freePort } from '../helpers/loopback-ports.ts';
import { runCli } from '../helpers/run-command.ts';
import type { TestGateway } from '../helpers/test-gateway.ts';
import type { TestPki, WrittenLeaf } from '../helpers/test-pki.ts';
import { startTinyproxy, type Tinyproxy, tinyproxyRequests } from '../helpers/tinyproxy.ts';

const SNAT = '127.0.0.2';
/** tinyproxy's own source address (Bind): what the target sees when tinyproxy carried the request. */
const TINYPROXY_BIND = '127.0.0.3';
/** Destinations whose rules name a refusing parent and a dead one; nothing listens there (never dialled). */
const REFUSED_IP = '127.0.0.5';
const DEAD_IP = '127.0.0.6';

/**
 * rules[].via with Debian's tinyproxy as the parent: gateway (SNAT 127.0.0.2) → tinyproxy (Bind
 * 127.0.0.3) → echo target. A second tinyproxy allows CONNECT to port 1 only, so it refuses ours;
 * a third parent is a port where nothing listens.
 */
describe('parent proxy per rule (rules[].via) with tinyproxy', () => {
  let pki: TestPki;
  let gw: TestGateway;
  let echoPort: number;
  let fixture: GatewayFixture;
  let parent: Tinyproxy;
  let strictParent: Tinyproxy;
  let deadPort: number;
  let client: WrittenLeaf;

  before(async () => {
    parent = await startTinyproxy({ bind: TINYPROXY_BIND });
    strictParent = await startTinyproxy({ connectPorts: [1] });
    deadPort = await freePort();
    const from = { namespaces: ['bookinfo'] };
    fixture = await startGatewayFixture(({ echoPort }) => ({
      listeners: [{ name: 'egress', listen: '127.0.0.1:0', mode: 'connect', snat: SNAT }],
      resolver: { hosts: { localhost: '127.0.0.1', 'metadata.example.com': '169.254.169.254' } },
      rules: [
        {
          name: 'via-tinyproxy',
          from,
          to: { hosts: ['localhost'], cidrs: ['127.0.0.1/32'], ports: [echoPort] },
          action: 'allow',
          via: `http://127.0.0.1:${parent.port}`,
        },
        {
          name: 'via-strict',
          from,
          to: { cidrs: [`${REFUSED_IP}/32`] },
          action: 'allow',
          via: `http://127.0.0.1:${strictParent.port}`,
        },
        // A parent does not lift the SSRF guard from the destination: no to.cidrs lists 169.254.169.254.
        {
          name: 'via-guarded',
          from,
          to: { hosts: ['metadata.example.com'] },
          action: 'allow',
          via: `http://127.0.0.1:${parent.port}`,
        },
        {
          name: 'via-dead',
          from,
          to: { cidrs: [`${DEAD_IP}/32`] },
          action: 'allow',
          via: `http://127.0.0.1:${deadPort}`,
        },
      ],
    }));
    ({ pki, gw, echoPort } = fixture);
    client = await pki.workload('bookinfo', 'productpage');
  });
  after(async () => {
    await fixture?.close();
    await parent?.stop();
    await strictParent?.stop();
  });

  it('tunnels CONNECT through tinyproxy: tinyproxy sees the SNAT address, the target sees tinyproxy', async () => {
    const result = await curlViaGateway(
      gw.port('egress'),
      client,
      pki.rootPath,
      `http://localhost:${echoPort}/tunnel`,
      ['-p'],
    );
    assert.equal(result.code, 0, result.stderr);
    const body = JSON.parse(result.stdout);
    assert.equal(body.url, '/tunnel');
    assert.equal(body.peerAddress, TINYPROXY_BIND);
    const seen = tinyproxyRequests(parent.log()).filter((r) => r.request.startsWith('CONNECT'));
    assert.deepEqual(seen, [{ client: SNAT, request: `CONNECT localhost:${echoPort} HTTP/1.1` }]);
    const closed = await gw.waitForRecord((r) => r.action === 'egress-closed' && r.http === undefined);
    assert.equal(closed.snat?.ip, SNAT);
    assert.deepEqual(closed.parent, { address: '127.0.0.1', port: parent.port, ip: '127.0.0.1' });
    assert.equal(closed.rule?.name, 'via-tinyproxy');
    // The gateway's own CONNECT exchange with the parent is not counted as tunnel bytes.
    const request = `GET /tunnel HTTP/1.1\r\nHost: localhost:${echoPort}\r\n`;
    assert.ok((closed.bytesFromClient ?? 0) >= request.length, String(closed.bytesFromClient));
    assert.ok((closed.bytesToClient ?? 0) >= result.stdout.length, String(closed.bytesToClient));
  });

  it('forwards absolute-form requests to tinyproxy, which fetches them from its Bind address', async () => {
    const before = tinyproxyRequests(parent.log()).length;
    const result = await curlViaGateway(
      gw.port('egress'),
      client,
      pki.rootPath,
      `http://localhost:${echoPort}/abs?x=1`,
    );
    assert.equal(result.code, 0, result.stderr);
    const body = JSON.parse(result.stdout);
    assert.equal(body.url, '/abs?x=1');
    assert.equal(body.host, `localhost:${echoPort}`);
    assert.equal(body.peerAddress, TINYPROXY_BIND);
    const seen = tinyproxyRequests(parent.log()).slice(before);
    assert.deepEqual(seen, [{ client: SNAT, request: `GET http://localhost:${echoPort}/abs?x=1 HTTP/1.1` }]);
    const permitted = await gw.waitForRecord((r) => r.action === 'egress-permitted' && r.http?.method === 'GET');
    assert.equal(permitted.snat?.ip, SNAT);
    assert.equal(permitted.parent?.port, parent.port);
  });

  it('answers 502 with Proxy-Status and the parent status when the parent refuses the CONNECT', async () => {
    // Positive control in the same test: the same client and gateway get through the working parent.
    const control = await curlViaGateway(gw.port('egress'), client, pki.rootPath, `http://localhost:${echoPort}/c`, [
      '-p',
    ]);
    assert.equal(control.code, 0, control.stderr);
    const result = await curlViaGateway(gw.port('egress'), client, pki.rootPath, `http://${REFUSED_IP}:${echoPort}/`, [
      '-p',
      '-v',
    ]);
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /< HTTP\/1\.1 502/);
    assert.match(
      result.stderr,
      /< Proxy-Status: mesh-egress-gateway; error=destination_unavailable; received-status=403;/i,
    );
    const rejected = await gw.waitForRecord((r) => r.code === 'EGW_UPSTREAM_PARENT_REFUSED');
    assert.equal(rejected.parent?.port, strictParent.port);
    assert.equal(rejected.destination?.ip, REFUSED_IP);
    assert.ok(
      tinyproxyRequests(strictParent.log()).some((r) => r.client === SNAT && r.request.startsWith('CONNECT')),
      strictParent.log(),
    );
  });

  it('answers 502 with Proxy-Status when nothing listens at the parent, for CONNECT and absolute-form', async () => {
    const control = await curlViaGateway(gw.port('egress'), client, pki.rootPath, `http://localhost:${echoPort}/d`);
    assert.equal(control.code, 0, control.stderr);
    for (const extra of [['-p', '-v'], ['-v']]) {
      const result = await curlViaGateway(gw.port('egress'), client, pki.rootPath, `http://${DEAD_IP}:80/`, extra);
      assert.match(result.stderr, /< HTTP\/1\.1 502/, result.stderr);
      assert.match(
        result.stderr,
        /< Proxy-Status: mesh-egress-gateway; error=destination_unavailable; details="[^"]*parent proxy/i,
      );
    }
    const records = gw.records.filter((r) => r.code === 'EGW_UPSTREAM_PARENT_UNREACHABLE');
    // The CONNECT refusal carries no http facts (as for every CONNECT dial failure); the GET does.
    assert.deepEqual(
      records.map((r) => r.http?.method),
      [undefined, 'GET'],
    );
    assert.ok(records.every((r) => r.parent?.port === deadPort));
    const metrics = await (await fetch(`http://127.0.0.1:${gw.gateway.adminAddress?.port}/metrics`)).text();
    assert.match(metrics, /^egw_upstream_dial_errors_total\{listener="egress",kind="parent_unreachable"\} 2$/m);
    assert.match(metrics, /^egw_upstream_dial_errors_total\{listener="egress",kind="parent_refused"\} 1$/m);
  });

  it('policy check names the parent of the allowing rule', async () => {
    const check = (dest: string) =>
      runCli([
        'policy',
        'check',
        '--config',
        gw.configPath,
        '--spiffe-id',
        'spiffe://cluster.local/ns/bookinfo/sa/productpage',
        '--dest',
        dest,
      ]);
    const viaRule = await check(`${DEAD_IP}:80`);
    assert.equal(viaRule.code, 0, viaRule.stderr);
    assert.match(
      viaRule.stdout,
      new RegExp(
        `^ALLOW listener=egress rule=via-dead ip=127\\.0\\.0\\.6 snat=127\\.0\\.0\\.2 via=http://127\\.0\\.0\\.1:${deadPort}:`,
      ),
    );
  });

  it('still judges the destination: the SSRF guard refuses it before the parent is asked', async () => {
    // Positive control: the parent itself sits on loopback (a prohibited range) and carries allowed traffic.
    const control = await curlViaGateway(gw.port('egress'), client, pki.rootPath, `http://localhost:${echoPort}/g`, [
      '-p',
    ]);
    assert.equal(control.code, 0, control.stderr);
    const asked = tinyproxyRequests(parent.log()).length;
    const result = await curlViaGateway(gw.port('egress'), client, pki.rootPath, 'http://metadata.example.com/latest', [
      '-p',
      '-v',
    ]);
    assert.match(result.stderr, /< HTTP\/1\.1 403/);
    assert.match(result.stderr, /error=destination_ip_prohibited/);
    const rejected = await gw.waitForRecord((r) => r.code === 'EGW_POLICY_DESTINATION_PROHIBITED');
    assert.equal(rejected.rule?.name, 'via-guarded');
    assert.equal(rejected.destination?.ip, '169.254.169.254');
    assert.equal(tinyproxyRequests(parent.log()).length, asked);
  });
});
