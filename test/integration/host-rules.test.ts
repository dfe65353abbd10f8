import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { curlViaGateway } from '../helpers/curl.ts';
import { type GatewayFixture, startGatewayFixture } from '../helpers/gateway-fixture.ts';
import type { TestGateway } from '../helpers/test-gateway.ts';
import type { TestPki, WrittenLeaf } from '../helpers/test-pki.ts';

// Issue 10 item 4, live: the deny rules that used to compile and never match (`to.hosts:
// ["127.0.0.1"]`, numeric labels) are refused at load; their working forms deny real traffic.
describe('host rules that mean what they say (live gateway)', () => {
  let pki: TestPki;
  let gw: TestGateway;
  let deniedPort: number;
  let allowedPort: number;
  let client: WrittenLeaf;
  let fixture: GatewayFixture;

  before(async () => {
    fixture = await startGatewayFixture(
      ({ httpEchoes }) => ({
        listeners: [{ name: 'egress', listen: '127.0.0.1:0', mode: 'connect' }],
        resolver: {
          hosts: { 'loop.example.com': '127.0.0.1', 'a.203.example': '127.0.0.2', 'ok.example.com': '127.0.0.2' },
        },
        rules: [
          { name: 'deny-one-address', to: { cidrs: ['127.0.0.1/32'] }, action: 'deny' },
          { name: 'deny-numeric-label', to: { hosts: ['*.203.example'] }, action: 'deny' },
          {
            name: 'loopback',
            to: { cidrs: ['127.0.0.0/8'], ports: httpEchoes.map((echo) => echo.port) },
            action: 'allow',
          },
        ],
      }),
      { httpEchoes: ['127.0.0.1', '127.0.0.2'] },
    );
    ({ pki, gw } = fixture);
    [deniedPort, allowedPort] = fixture.httpEchoes.map((echo) => echo.port) as [number, number];
    client = await pki.workload('bookinfo', 'productpage');
  });
  after(async () => {
    await fixture?.close();
  });

  const via = (url: string, extra: string[] = ['-p']) =>
    curlViaGateway(gw.port('egress'), client, pki.rootPath, url, [...extra, '-v']);

  async function assertDenied(url: string, rule: string, extra?: string[]) {
    const seen = gw.records.length;
    const result = await via(url, extra);
    assert.match(result.stderr, /< HTTP\/1\.1 403/, url);
    const record = await gw.waitForRecord(
      (r) => gw.records.indexOf(r) >= seen && r.action === 'egress-rejected' && r.code === 'EGW_POLICY_DENIED',
    );
    assert.equal(record.reason, `denied by rule ${rule}`, url);
    return record;
  }

  it('denies the address with to.cidrs whether the client names the IP or a name that resolves to it', async () => {
    const control = await via(`http://127.0.0.2:${allowedPort}/`);
    assert.equal(control.code, 0, `positive control: ${control.stderr}`);
    await assertDenied(`http://127.0.0.1:${deniedPort}/`, 'deny-one-address');
    const byName = await assertDenied(`http://loop.example.com:${deniedPort}/`, 'deny-one-address');
    assert.equal(byName.destination?.ip, '127.0.0.1');
    await assertDenied(`http://127.0.0.1:${deniedPort}/absolute`, 'deny-one-address', []);
  });

  it('denies a host glob with a numeric label, in any case and with a trailing dot', async () => {
    const control = await via(`http://ok.example.com:${allowedPort}/`);
    assert.equal(control.code, 0, `positive control: ${control.stderr}`);
    await assertDenied(`http://A.203.Example.:${allowedPort}/`, 'deny-numeric-label');
  });
});
