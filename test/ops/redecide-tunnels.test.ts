import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { TLSSocket } from 'node:tls';
import { parse, stringify } from 'yaml';
import { FORMATTERS } from '../../src/audit/formats/record-formatters.ts';
import type { AuditRecord } from '../../src/core/audit-event.ts';
import { type EchoTarget, type FixtureTargets, startFixtureTargets } from '../helpers/gateway-fixture.ts';
import { waitUntil } from '../helpers/poll-until.ts';
import type { TestGateway } from '../helpers/test-gateway.ts';
import { createTestPki, type TestPki } from '../helpers/test-pki.ts';
import { openTlsClient, openTunnel, type Tunnel } from '../helpers/tunnel-client.ts';

/** A TLS connection to a tcp-mode listener: the decrypted bytes go to its fixed upstream. */
const openTcpRelay = openTlsClient;

async function echoes(tunnel: Tunnel, text: string): Promise<void> {
  const before = tunnel.received().length;
  tunnel.socket.write(text);
  const got = await tunnel.waitFor(before + text.length);
  assert.equal(got.subarray(before).toString(), text);
}

async function relayEchoes(socket: TLSSocket, text: string): Promise<void> {
  const got = new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no echo within 5 s')), 5000);
    socket.once('data', (chunk: Buffer) => {
      clearTimeout(timer);
      resolve(chunk.toString());
    });
  });
  socket.write(text);
  assert.equal(await got, text);
}

function editConfig(path: string, edit: (config: Record<string, unknown>) => void): void {
  const config = parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  edit(config);
  writeFileSync(path, stringify(config));
}

const closedOn = (gw: TestGateway, listener: string, port?: number) =>
  gw.waitForRecord(
    (r) =>
      r.action === 'egress-closed' &&
      r.listener === listener &&
      (port === undefined || r.destination?.port === port) &&
      r.reason.startsWith('reload-denied'),
  );

describe('open tunnels are re-decided on every reload', () => {
  let pki: TestPki;
  let other: TestPki;
  let one: EchoTarget;
  let two: EchoTarget;
  let targets: FixtureTargets;
  before(async () => {
    targets = await startFixtureTargets({ httpEchoes: [], tcpEchoes: 2 });
    ({ pki } = targets);
    [one, two] = targets.tcpEchoes as [EchoTarget, EchoTarget];
    other = await createTestPki();
  });
  after(async () => {
    await targets?.close();
    other?.cleanup();
  });

  const rules = () => [
    { name: 'to-one', listeners: ['egress'], to: { cidrs: ['127.0.0.0/8'], ports: [one.port] }, action: 'allow' },
    { name: 'to-two', listeners: ['egress'], to: { cidrs: ['127.0.0.0/8'], ports: [two.port] }, action: 'allow' },
    { name: 'relay', listeners: ['relay'], action: 'allow' },
  ];
  const listeners = () => [
    { name: 'egress', listen: '127.0.0.1:0', mode: 'connect' },
    { name: 'relay', listen: '127.0.0.1:0', mode: 'tcp', upstream: `127.0.0.1:${one.port}` },
  ];

  it('closes and audits the CONNECT and tcp tunnels whose rule was removed; the others carry on', async () => {
    const gw = await targets.startGateway({
      listeners: listeners(),
      rules: rules(),
      admin: { listen: '127.0.0.1:0', watch: false },
    });
    try {
      const client = await pki.workload('bookinfo', 'productpage');
      const toOne = await openTunnel(gw.port('egress'), client, pki.rootPath, `127.0.0.1:${one.port}`);
      const toTwo = await openTunnel(gw.port('egress'), client, pki.rootPath, `127.0.0.1:${two.port}`);
      const relay = await openTcpRelay(gw.port('relay'), client, pki.rootPath);
      await echoes(toOne, 'one'); // positive controls: all three carry data before the reload
      await echoes(toTwo, 'two');
      await relayEchoes(relay, 'relay');
      editConfig(gw.configPath, (c) => {
        c.rules = rules().filter((r) => r.name === 'to-two');
      });
      assert.deepEqual(await gw.gateway.reload(), { ok: true });

      const connectClosed = await closedOn(gw, 'egress', one.port);
      const relayClosed = await closedOn(gw, 'relay');
      for (const record of [connectClosed, relayClosed]) {
        assert.equal(record.code, 'EGW_POLICY_DENIED');
        assert.match(record.reason, /^reload-denied: no rule matched \(default deny\)$/);
        for (const [format, formatter] of Object.entries(FORMATTERS))
          assert.match(formatter(record), /reload-denied/, `the ${format} format names the reload`);
      }
      assert.equal(connectClosed.bytesFromClient, 3, 'the close record still counts the bytes');
      await echoes(toTwo, 'still'); // the tunnel the new rules allow was not touched
      assert.equal(
        gw.records.filter((r) => r.action === 'egress-closed' && r.destination?.port === two.port).length,
        0,
      );
      await waitUntil(() => relay.destroyed, 5000, 'the tcp client to see its connection end');
      assert.ok(relay.destroyed, 'the tcp client saw its connection end');
      toTwo.close();
    } finally {
      await gw.close();
    }
  });

  it('with reload.redecideTunnels: false a rule change spares tunnels, a removed anchor still ends them', async () => {
    const anchors = join(pki.dir, 'both.pem');
    writeFileSync(anchors, `${pki.intermediate.certPem}\n${other.intermediate.certPem}`);
    const gw = await targets.startGateway(
      {
        listeners: listeners(),
        rules: rules(),
        reload: { redecideTunnels: false },
        admin: { listen: '127.0.0.1:0', watch: false },
      },
      { anchors },
    );
    try {
      const ours = await pki.workload('bookinfo', 'productpage');
      const theirs = await other.workload('bookinfo', 'reviews');
      const ruleRemoved = await openTunnel(gw.port('egress'), ours, pki.rootPath, `127.0.0.1:${one.port}`);
      const anchorRemoved = await openTunnel(gw.port('egress'), theirs, pki.rootPath, `127.0.0.1:${two.port}`);
      await echoes(ruleRemoved, 'a');
      await echoes(anchorRemoved, 'b');
      writeFileSync(anchors, pki.intermediate.certPem); // other's CA is no longer trusted
      editConfig(gw.configPath, (c) => {
        c.rules = rules().filter((r) => r.name === 'to-two');
      });
      assert.deepEqual(await gw.gateway.reload(), { ok: true });

      const ended = await closedOn(gw, 'egress', two.port);
      assert.equal(ended.code, 'EGW_IDENTITY_CHAIN_UNTRUSTED');
      assert.match(ended.reason, /^reload-denied: identity no longer trusted: /);
      assert.equal(ended.identity?.spiffeId, `spiffe://${other.trustDomain}/ns/bookinfo/sa/reviews`);
      await echoes(ruleRemoved, 'survives'); // the opt-out: its rule is gone, the tunnel stays
      const closes = (r: AuditRecord) => r.action === 'egress-closed' && r.destination?.port === one.port;
      assert.equal(gw.records.filter(closes).length, 0);
      ruleRemoved.close();
    } finally {
      await gw.close();
    }
  });

  it("ends CONNECT and tcp tunnels at their leaf's notAfter, audited as identity-expired", async () => {
    const gw = await targets.startGateway({
      listeners: listeners(),
      rules: rules(),
      admin: { listen: '127.0.0.1:0', watch: false },
    });
    try {
      const notAfter = new Date(Math.floor(Date.now() / 1000) * 1000 + 3000);
      const leaf = await pki.workload('bookinfo', 'ratings', { notBefore: new Date(Date.now() - 60_000), notAfter });
      const tunnel = await openTunnel(gw.port('egress'), leaf, pki.rootPath, `127.0.0.1:${one.port}`);
      const relay = await openTcpRelay(gw.port('relay'), leaf, pki.rootPath);
      await echoes(tunnel, 'before'); // positive controls: both work until notAfter
      await relayEchoes(relay, 'before');
      for (const listener of ['egress', 'relay']) {
        const closed = await gw.waitForRecord((r) => r.action === 'egress-closed' && r.listener === listener, 10_000);
        assert.equal(closed.code, 'EGW_IDENTITY_EXPIRED');
        assert.match(closed.reason, /^identity-expired: /);
        assert.ok(Date.parse(closed.end ?? '') >= notAfter.getTime(), 'not before notAfter');
      }
      assert.equal(((await gw.gateway.stats()) as { activeTunnels: number }).activeTunnels, 0);
    } finally {
      await gw.close();
    }
  });
});
