import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { curlViaGateway } from '../helpers/curl.ts';
import { type GatewayFixture, startGatewayFixture } from '../helpers/gateway-fixture.ts';
import { serviceAccountsOnEachAddress } from '../helpers/snat-identities.ts';
import type { TestGateway } from '../helpers/test-gateway.ts';
import type { TestPki, WrittenLeaf } from '../helpers/test-pki.ts';
import { openTunnel } from '../helpers/tunnel-client.ts';

// Issue 12 item 5 on loopback (every 127.x address binds here): two workloads land on their own
// stable pool addresses, round-robin alternates, and audit records and /connections show the
// address used. Failover when an address leaves the host: test/integration/snat-failover.test.ts.
describe('SNAT pools, live through curl', () => {
  let pki: TestPki;
  let gw: TestGateway;
  let echoPort: number;
  let fixture: GatewayFixture;
  let first: WrittenLeaf;
  let second: WrittenLeaf;
  let secondId: string;

  before(async () => {
    fixture = await startGatewayFixture(({ echoPort }) => ({
      listeners: [
        { name: 'egress', listen: '127.0.0.1:0', mode: 'connect', snat: ['127.0.0.2', '127.0.0.5'] },
        {
          name: 'spread',
          listen: '127.0.0.1:0',
          mode: 'connect',
          snat: ['127.0.0.2', '127.0.0.5'],
          snatSelection: 'round-robin',
        },
      ],
      rules: [{ name: 'echo', to: { cidrs: ['127.0.0.1/32'], ports: [echoPort] }, action: 'allow' }],
    }));
    ({ pki, gw, echoPort } = fixture);
    const [a, b] = serviceAccountsOnEachAddress(pki.trustDomain, 'bookinfo');
    first = await pki.workload('bookinfo', a);
    second = await pki.workload('bookinfo', b);
    secondId = `spiffe://${pki.trustDomain}/ns/bookinfo/sa/${b}`;
  });
  after(async () => {
    await fixture?.close();
  });

  /** The source address the echo server saw, and the SNAT address of the audit record. */
  async function sourceOf(listener: string, client: WrittenLeaf): Promise<{ seen: string; audited?: string }> {
    const mark = gw.records.length;
    const result = await curlViaGateway(gw.port(listener), client, pki.rootPath, `http://127.0.0.1:${echoPort}/`, [
      '-p',
    ]);
    assert.equal(result.code, 0, result.stderr);
    const seen = (JSON.parse(result.stdout) as { peerAddress: string }).peerAddress;
    const record = await gw.waitForRecord((r) => gw.records.indexOf(r) >= mark && r.action === 'egress-permitted');
    return { seen, ...(record.snat?.ip ? { audited: record.snat.ip } : {}) };
  }

  it('per-identity: each of two workloads always leaves from its own address', async () => {
    for (let round = 0; round < 2; round++) {
      assert.deepEqual(await sourceOf('egress', first), { seen: '127.0.0.2', audited: '127.0.0.2' }, `round ${round}`);
      assert.deepEqual(await sourceOf('egress', second), { seen: '127.0.0.5', audited: '127.0.0.5' }, `round ${round}`);
    }
  });

  it('round-robin: one workload alternates between the addresses', async () => {
    const seen: string[] = [];
    for (let i = 0; i < 4; i++) seen.push((await sourceOf('spread', first)).seen);
    assert.ok(seen[0] === '127.0.0.2' || seen[0] === '127.0.0.5', seen.join());
    assert.deepEqual(
      seen,
      seen[0] === '127.0.0.2'
        ? ['127.0.0.2', '127.0.0.5', '127.0.0.2', '127.0.0.5']
        : ['127.0.0.5', '127.0.0.2', '127.0.0.5', '127.0.0.2'],
    );
  });

  it('/connections shows the pool address a live tunnel left from', async () => {
    const admin = gw.gateway.adminAddress;
    const tunnel = await openTunnel(gw.port('egress'), second, pki.rootPath, `127.0.0.1:${echoPort}`);
    try {
      tunnel.socket.write('GET /live HTTP/1.1\r\nHost: x\r\n\r\n');
      await tunnel.waitFor(10);
      const list = (await (await fetch(`http://127.0.0.1:${admin?.port}/connections`)).json()) as Array<{
        identity: string;
        snat: string;
      }>;
      assert.equal(list.length, 1, JSON.stringify(list));
      assert.equal(list[0]?.identity, secondId);
      assert.equal(list[0]?.snat, '127.0.0.5');
    } finally {
      tunnel.close();
    }
  });
});
