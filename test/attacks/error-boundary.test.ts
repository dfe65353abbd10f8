import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { subscribeAudit } from '../../src/core/audit-event.ts';
import type { FaultPoint } from '../../src/proxy/error-boundary.ts';
import { pollUntil, rawTlsClient } from '../helpers/abrupt-clients.ts';
import { type GatewayFixture, startGatewayFixture } from '../helpers/gateway-fixture.ts';
import type { TestGateway } from '../helpers/test-gateway.ts';
import type { TestPki, WrittenLeaf } from '../helpers/test-pki.ts';

/**
 * Issue 9 item 9 / "Must have" 7: an unexpected throw in one connection's handler closes that
 * connection only, is audited with EGW_INTERNAL and counted; the process keeps serving. The
 * fault is injected through startGateway's test-only `faultProbe` option (no env var, no config
 * key), keyed on the client's service account. Without the boundary the throw is an unhandled
 * rejection, which ends this test process.
 */
describe('per-connection error boundary', () => {
  let pki: TestPki;
  let gw: TestGateway;
  let echo: { port: number };
  let fixture: GatewayFixture;
  let good: WrittenLeaf;
  let throwsEarly: WrittenLeaf;
  let throwsInTunnel: WrittenLeaf;
  let auditBreaker: WrittenLeaf;
  const faults: Partial<Record<string, FaultPoint>> = {
    'throws-early': 'identified',
    'throws-in-tunnel': 'tunnel-open',
  };

  before(async () => {
    fixture = await startGatewayFixture(
      ({ tcpEchoPort }) => ({
        listeners: [
          { name: 'egress', listen: '127.0.0.1:0', mode: 'connect' },
          { name: 'legacy', listen: '127.0.0.1:0', mode: 'tcp', upstream: `127.0.0.1:${tcpEchoPort}` },
        ],
        rules: [
          { name: 'bookinfo', from: { namespaces: ['bookinfo'] }, to: { cidrs: ['127.0.0.0/8'] }, action: 'allow' },
        ],
        admin: { listen: '127.0.0.1:0', watch: false },
      }),
      {
        httpEchoes: [],
        tcpEchoes: 1,
        faultProbe: (point, ctx) => {
          if (faults[ctx.peer.spiffeId.serviceAccount ?? ''] === point) throw new TypeError(`injected at ${point}`);
        },
      },
    );
    ({ pki, gw } = fixture);
    echo = { port: fixture.tcpEchoPort };
    good = await pki.workload('bookinfo', 'productpage');
    throwsEarly = await pki.workload('bookinfo', 'throws-early');
    throwsInTunnel = await pki.workload('bookinfo', 'throws-in-tunnel');
    auditBreaker = await pki.workload('bookinfo', 'audit-breaker');
  });
  after(async () => {
    await fixture?.close();
  });

  const tunnelWorks = async (listener: string, request: string) => {
    const client = await rawTlsClient(gw.port(listener), good, pki.rootPath);
    client.tls.write(`${request}ping`);
    const ok = await pollUntil(() => client.received().endsWith('ping'), 5_000);
    client.tls.end();
    return ok;
  };
  const internalErrors = async () => {
    const text = (await gw.gateway.metrics()).body;
    return [...text.matchAll(/^egw_internal_errors_total\{[^}]*\} (\d+)/gm)].reduce((a, m) => a + Number(m[1]), 0);
  };
  const subscriberErrors = async () => {
    const text = (await gw.gateway.metrics()).body;
    return Number(/^egw_audit_subscriber_errors_total (\d+)/m.exec(text)?.[1] ?? Number.NaN);
  };
  const connect = () => `CONNECT 127.0.0.1:${echo.port} HTTP/1.1\r\n\r\n`;

  it('a throw before the mode handler resets that connection only and is audited and counted', async () => {
    assert.ok(await tunnelWorks('egress', connect()), 'positive control: a good client tunnels');
    assert.equal(await internalErrors(), 0);
    const victim = await rawTlsClient(gw.port('legacy'), throwsEarly, pki.rootPath);
    assert.ok(await victim.closedWithin(5_000), 'the faulty connection was not closed');
    const record = await gw.waitForRecord((r) => r.code === 'EGW_INTERNAL');
    assert.equal(record.action, 'egress-rejected');
    assert.match(record.reason, /internal error: TypeError: injected at identified/);
    assert.equal(record.identity?.serviceAccount, 'throws-early');
    assert.equal(await internalErrors(), 1);
    assert.ok(await tunnelWorks('legacy', ''), 'the process keeps serving');
  });

  it('a throw inside an open tunnel closes it with one egress-closed EGW_INTERNAL and frees it', async () => {
    const before = gw.records.length;
    const victim = await rawTlsClient(gw.port('egress'), throwsInTunnel, pki.rootPath);
    victim.tls.write(connect());
    assert.ok(await victim.closedWithin(5_000), 'the faulty tunnel was not closed');
    const mine = () => gw.records.slice(before).filter((r) => r.identity?.serviceAccount === 'throws-in-tunnel');
    assert.ok(await pollUntil(() => mine().some((r) => r.action === 'egress-closed'), 5_000));
    assert.deepEqual(
      mine().map((r) => `${r.action}/${r.code ?? ''}`),
      ['egress-permitted/', 'egress-closed/EGW_INTERNAL'],
    );
    assert.equal(await internalErrors(), 2);
    assert.equal(((await gw.gateway.connections()) as unknown[]).length, 0);
    assert.ok(await tunnelWorks('egress', connect()), 'the process keeps serving');
  });

  it('an audit subscriber that throws is counted; the connection and the process carry on', async () => {
    const unsubscribe = subscribeAudit((r) => {
      if (r.identity?.serviceAccount === 'audit-breaker') throw new Error('a buggy subscriber');
    });
    try {
      assert.equal(await subscriberErrors(), 0, 'positive control: the counter is exposed and starts at 0');
      const client = await rawTlsClient(gw.port('egress'), auditBreaker, pki.rootPath);
      client.tls.write(`${connect()}ping`);
      assert.ok(await pollUntil(() => client.received().endsWith('ping'), 5_000), client.received());
      client.tls.end();
      await gw.waitForRecord((r) => r.identity?.serviceAccount === 'audit-breaker' && r.action === 'egress-closed');
      assert.equal(await subscriberErrors(), 2, 'the throws on the permit and the close were counted');
      const mine = gw.records.filter((r) => r.identity?.serviceAccount === 'audit-breaker').map((r) => r.action);
      assert.deepEqual(mine, ['egress-permitted', 'egress-closed'], 'the other subscribers still got every record');
      assert.ok(await tunnelWorks('legacy', ''), 'the process keeps serving');
    } finally {
      unsubscribe();
    }
  });
});
