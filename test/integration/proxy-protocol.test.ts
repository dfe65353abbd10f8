import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { type AddressInfo, connect as netConnect, type Server } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { parse, stringify } from 'yaml';
import type { AuditRecord } from '../../src/core/audit-event.ts';
import { PROXY_V2_SIGNATURE } from '../../src/listener/proxy-protocol.ts';
import { type FixtureTargets, startFixtureTargets } from '../helpers/gateway-fixture.ts';
import { type Haproxy, startHaproxy } from '../helpers/haproxy.ts';
import { freePort } from '../helpers/loopback-ports.ts';
import { waitUntil } from '../helpers/poll-until.ts';
import { exchange, header, rawSend, startHeaderEcho, startRelay } from '../helpers/proxy-protocol-peers.ts';
import type { TestGateway } from '../helpers/test-gateway.ts';
import type { TestPki, WrittenLeaf } from '../helpers/test-pki.ts';

const BOOKINFO = 'spiffe://cluster.local/ns/bookinfo/sa/productpage';

const aggregateFrom = (ip: string, reason: string) => (r: AuditRecord) =>
  r.action === 'handshake-refused-aggregate' &&
  r.source.ip === ip &&
  ((r.refusals?.byReason as Record<string, number> | undefined)?.[reason] ?? 0) > 0;

describe('PROXY protocol v2 (haproxy send-proxy-v2 in front, accept-proxy behind)', () => {
  let pki: TestPki;
  let gw: TestGateway;
  let haproxy: Haproxy;
  let headerEcho: Server;
  let bookinfo: WrittenLeaf;
  let frontPort: number;
  let holdFrontPort: number;

  let targets: FixtureTargets;

  // The targets are the suite's own (haproxy with accept-proxy, a header echo): the fixture brings the PKI.
  before(async () => {
    targets = await startFixtureTargets({ httpEchoes: [] });
    ({ pki } = targets);
    bookinfo = await pki.workload('bookinfo', 'productpage');
    headerEcho = await startHeaderEcho();
    const webPort = await freePort();
    frontPort = await freePort();
    holdFrontPort = await freePort();
    const behindLb = { proxyProtocol: 'v2', proxyProtocolFrom: ['127.0.0.1/32'], upstreamProxyProtocol: 'v2' };
    gw = await targets.startGateway({
      listeners: [
        { name: 'lb-web', listen: '127.0.0.1:0', mode: 'tcp', upstream: `127.0.0.1:${webPort}`, ...behindLb },
        {
          name: 'lb-hold',
          listen: '127.0.0.1:0',
          mode: 'tcp',
          upstream: `127.0.0.1:${(headerEcho.address() as AddressInfo).port}`,
          ...behindLb,
        },
        {
          name: 'direct',
          listen: '127.0.0.1:0',
          mode: 'tcp',
          upstream: `127.0.0.1:${(headerEcho.address() as AddressInfo).port}`,
          upstreamProxyProtocol: 'v2',
        },
      ],
      rules: [{ name: 'bookinfo-only', from: { namespaces: ['bookinfo'] }, action: 'allow' }],
      limits: { maxPreHandshakeSocketsPerSource: 2, preHandshakeAuditInterval: '200ms' },
      timeouts: { firstByte: '1s' },
    });
    haproxy = await startHaproxy(
      [
        // In front: a TCP balancer that passes TLS through and says who the client was.
        'frontend front',
        `  bind 127.0.0.1:${frontPort}`,
        '  default_backend gateway',
        'backend gateway',
        `  server gw 127.0.0.1:${gw.port('lb-web')} send-proxy-v2 source 127.0.0.1`,
        'frontend hold-front',
        `  bind 127.0.0.1:${holdFrontPort}`,
        '  default_backend gateway-hold',
        'backend gateway-hold',
        `  server gw 127.0.0.1:${gw.port('lb-hold')} send-proxy-v2 source 127.0.0.1`,
        // Behind: the tcp-mode upstream reads the gateway's header and answers what it carried.
        'frontend web',
        '  mode http',
        `  bind 127.0.0.1:${webPort} accept-proxy`,
        '  log-format "accept-proxy src=%ci:%cp uid=%[fc_pp_unique_id]"',
        '  http-request return status 200 content-type text/plain lf-string "src=%[src]:%[src_port] uid=%[fc_pp_unique_id]\\n"',
      ].join('\n'),
      [frontPort, holdFrontPort, webPort],
    );
  });
  after(async () => {
    await haproxy?.stop();
    await targets?.close();
    headerEcho?.close();
  });

  it('audits the client behind haproxy, not haproxy, and haproxy behind the gateway sees that client', async () => {
    const result = await exchange(frontPort, bookinfo, {
      localAddress: '127.0.0.7',
      send: 'GET / HTTP/1.0\r\nHost: web\r\n\r\n',
      ca: pki.rootPath,
    });
    const seen = /src=([\d.]+):(\d+) uid=(\S+)/.exec(result.text);
    assert.ok(seen, `haproxy answered: ${result.text} ${result.error ?? ''}\n${haproxy.log()}`);
    assert.equal(seen[1], '127.0.0.7');
    assert.equal(Number(seen[2]), result.localPort);
    const permitted = await gw.waitForRecord((r) => r.action === 'egress-permitted' && r.connectionId === seen[3]);
    assert.deepEqual(permitted.source, { ip: '127.0.0.7', port: result.localPort });
    assert.equal(permitted.identity?.spiffeId, BOOKINFO);
    assert.match(haproxy.log(), new RegExp(`accept-proxy src=127\\.0\\.0\\.7:${result.localPort} uid=${seen[3]}`));
  });

  it('sends the SPIFFE ID in TLV 0xE0 and shows the PROXY source in /connections', async () => {
    let listed: unknown;
    const result = await exchange(holdFrontPort, bookinfo, {
      localAddress: '127.0.0.7',
      ca: pki.rootPath,
      onOpen: (tls) => {
        tls.once('data', async () => {
          listed = await gw.gateway.connections();
          tls.end();
        });
      },
    });
    const said = JSON.parse(result.text.split('\n')[0] ?? '{}');
    assert.deepEqual(said.source, { ip: '127.0.0.7', port: result.localPort });
    assert.equal(said.spiffeId, BOOKINFO);
    const tunnel = (listed as Array<{ connectionId: string; source: string }>).find(
      (t) => t.connectionId === said.uniqueId,
    );
    assert.equal(tunnel?.source, `127.0.0.7:${result.localPort}`);
    // Without a balancer in front, the upstream is told the socket's own peer.
    const direct = await exchange(gw.port('direct'), bookinfo, {
      localAddress: '127.0.0.8',
      ca: pki.rootPath,
      onOpen: (tls) => tls.once('data', () => tls.end()),
    });
    assert.deepEqual(JSON.parse(direct.text.split('\n')[0] ?? '{}').source, {
      ip: '127.0.0.8',
      port: direct.localPort,
    });
  });

  it('refuses a connection without a header and one with a malformed header (reset, counted in aggregate)', async () => {
    // Positive control: a header written by hand, then mTLS, is served and audited with its source.
    const good = await exchange(gw.port('lb-web'), bookinfo, {
      header: header({ ip: '10.20.30.40', port: 5555 }),
      send: 'GET / HTTP/1.0\r\n\r\n',
      ca: pki.rootPath,
    });
    assert.match(good.text, /src=10\.20\.30\.40:5555 /);
    // No header: the ClientHello is not a PROXY signature.
    const bare = await exchange(gw.port('lb-web'), bookinfo, { send: 'GET / HTTP/1.0\r\n\r\n', ca: pki.rootPath });
    assert.doesNotMatch(bare.text, /src=/);
    assert.ok(bare.error, 'the handshake fails');
    const bareRecord = await gw.waitForRecord(aggregateFrom('127.0.0.1', 'proxy_header'));
    assert.equal(bareRecord.code, 'EGW_PREHANDSHAKE_REFUSED');
    assert.equal(bareRecord.listener, 'lb-web');
    // Malformed: version 3, then an oversize TLV length, each reset.
    const version3 = Buffer.concat([PROXY_V2_SIGNATURE, Buffer.from([0x31, 0x11, 0x00, 0x0c]), Buffer.alloc(12)]);
    assert.equal((await rawSend(gw.port('lb-web'), version3)).error, 'ECONNRESET');
    const oversize = Buffer.concat([PROXY_V2_SIGNATURE, Buffer.from([0x21, 0x11, 0xff, 0xff])]);
    assert.equal((await rawSend(gw.port('lb-web'), oversize)).error, 'ECONNRESET');
    const before = gw.records.filter(aggregateFrom('127.0.0.1', 'proxy_header')).length;
    await gw.waitForRecord((r) => aggregateFrom('127.0.0.1', 'proxy_header')(r) && gw.records.indexOf(r) >= before);
    const { body } = await gw.gateway.metrics();
    const counted = /egw_prehandshake_rejections_total\{listener="lb-web",reason="proxy_header"\} (\d+)/.exec(body);
    assert.ok(Number(counted?.[1]) >= 3, `counted: ${counted?.[0]}`);
  });

  it('hands TLS exactly the bytes after the header: header and ClientHello in one segment, or dripped', async () => {
    for (const mode of ['coalesce', 'drip'] as const) {
      const relay = await startRelay(gw.port('lb-web'), mode);
      try {
        const result = await exchange((relay.address() as AddressInfo).port, bookinfo, {
          localAddress: '127.0.0.6',
          send: 'GET / HTTP/1.0\r\n\r\n',
          ca: pki.rootPath,
        });
        assert.match(result.text, new RegExp(`src=127\\.0\\.0\\.6:${result.localPort} `), `${mode}: ${result.error}`);
      } finally {
        relay.close();
      }
    }
  });

  it('refuses a header from a peer outside proxyProtocolFrom', async () => {
    const trusted = await exchange(gw.port('lb-web'), bookinfo, {
      header: header({ ip: '10.0.0.1', port: 1 }),
      send: 'GET / HTTP/1.0\r\n\r\n',
      ca: pki.rootPath,
    });
    assert.match(trusted.text, /src=10\.0\.0\.1:1 /); // positive control
    const forged = await rawSend(gw.port('lb-web'), header({ ip: '10.0.0.1', port: 1 }), '127.0.0.9');
    assert.equal(forged.error, 'ECONNRESET');
    const record = await gw.waitForRecord(aggregateFrom('127.0.0.9', 'proxy_untrusted'));
    assert.equal(record.listener, 'lb-web');
  });

  it("serves a LOCAL header (balancer health check) with the socket's own address", async () => {
    const local = Buffer.concat([PROXY_V2_SIGNATURE, Buffer.from([0x20, 0x00, 0x00, 0x00])]);
    const result = await exchange(gw.port('lb-web'), bookinfo, {
      header: local,
      send: 'GET / HTTP/1.0\r\n\r\n',
      localAddress: '127.0.0.1',
      ca: pki.rootPath,
    });
    const uid = /uid=(\S+)/.exec(result.text)?.[1];
    assert.ok(uid, result.text);
    const permitted = await gw.waitForRecord((r) => r.action === 'egress-permitted' && r.connectionId === uid);
    assert.deepEqual(permitted.source, { ip: '127.0.0.1', port: result.localPort });
  });

  it('does not audit a LOCAL health check that closes after its header', async () => {
    const local = Buffer.concat([PROXY_V2_SIGNATURE, Buffer.from([0x20, 0x00, 0x00, 0x00])]);
    const rejected = (r: AuditRecord) => r.action === 'identity-rejected' && r.listener === 'lb-web';
    // Positive control: after the same header, a byte that is not TLS is a failed handshake, audited.
    await rawSend(gw.port('lb-web'), Buffer.concat([local, Buffer.from('x\r\n')]), '127.0.0.1', { end: true });
    const audited = await gw.waitForRecord((r) => rejected(r) && r.code === 'EGW_TLS_HANDSHAKE');
    assert.equal(audited.source.ip, '127.0.0.1');
    const before = gw.records.filter(rejected).length;
    await rawSend(gw.port('lb-web'), local, '127.0.0.1', { end: true });
    // The record, if any, is published before the close; a second control sent after it is the
    // positive event that bounds the wait (instead of a sleep): exactly one more record, its own.
    await rawSend(gw.port('lb-web'), Buffer.concat([local, Buffer.from('x\r\n')]), '127.0.0.1', { end: true });
    await waitUntil(() => gw.records.filter(rejected).length > before, 5_000, 'the second control to be audited');
    assert.equal(gw.records.filter(rejected).length, before + 1);
  });

  it('caps pre-handshake sockets per PROXY source, not per balancer, and restarts the first-byte deadline', async () => {
    // Two sockets from the balancer claim 10.9.9.9 and send nothing after the header.
    const held = [0, 1].map(() => {
      const socket = netConnect({ host: '127.0.0.1', port: gw.port('lb-web') }, () =>
        socket.write(header({ ip: '10.9.9.9', port: 7 })),
      );
      socket.on('error', () => {});
      return socket;
    });
    await Promise.all(held.map((s) => new Promise((r) => s.once('connect', r))));
    await new Promise((r) => setTimeout(r, 200)); // let the gateway read both headers
    // Positive control: a third socket from the same balancer, for another client, is served.
    const other = await exchange(gw.port('lb-web'), bookinfo, {
      header: header({ ip: '10.9.9.10', port: 8 }),
      send: 'GET / HTTP/1.0\r\n\r\n',
      ca: pki.rootPath,
    });
    assert.match(other.text, /src=10\.9\.9\.10:8 /);
    const third = await exchange(gw.port('lb-web'), bookinfo, {
      header: header({ ip: '10.9.9.9', port: 9 }),
      send: 'GET / HTTP/1.0\r\n\r\n',
      ca: pki.rootPath,
    });
    assert.doesNotMatch(third.text, /src=/);
    await gw.waitForRecord(aggregateFrom('10.9.9.9', 'source_limit'));
    // The header alone does not hold a socket: the first-byte deadline starts again after it.
    await gw.waitForRecord(aggregateFrom('10.9.9.9', 'first_byte_timeout'), 5_000);
    await Promise.all(held.map((s) => new Promise((r) => (s.destroyed ? r(null) : s.once('close', r)))));
  });

  // Last: it changes the running configuration.
  it('applies a changed proxyProtocolFrom on reload to new connections', async () => {
    const send = { header: header({ ip: '10.5.5.5', port: 5 }), send: 'GET / HTTP/1.0\r\n\r\n', ca: pki.rootPath };
    const before = await exchange(gw.port('lb-web'), bookinfo, { ...send, localAddress: '127.0.0.1' });
    assert.match(before.text, /src=10\.5\.5\.5:5 /); // positive control
    const config = parse(readFileSync(gw.configPath, 'utf8'));
    config.listeners[0].proxyProtocolFrom = ['127.0.0.9/32'];
    writeFileSync(gw.configPath, stringify(config));
    const reload = await gw.gateway.reload();
    assert.ok(reload.ok, JSON.stringify(reload));
    const moved = await exchange(gw.port('lb-web'), bookinfo, { ...send, localAddress: '127.0.0.9' });
    assert.match(moved.text, /src=10\.5\.5\.5:5 /);
    const old = await exchange(gw.port('lb-web'), bookinfo, { ...send, localAddress: '127.0.0.1' });
    assert.doesNotMatch(old.text, /src=/);
    await gw.waitForRecord(aggregateFrom('127.0.0.1', 'proxy_untrusted'));
  });
});
