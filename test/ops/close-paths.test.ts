import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  answerAndClose,
  echoUpstream,
  type GatedUpstream,
  gatedUpstream,
  pollUntil,
  rawTlsClient,
  resetMidHandshake,
  resetMidStream,
  type ScriptedUpstream,
  sTimeNew,
} from '../helpers/abrupt-clients.ts';
import { type ChildGateway, type LeakReport, startChildGateway } from '../helpers/child-gateway.ts';
import { waitUntil } from '../helpers/poll-until.ts';
import { createTestPki, type TestPki, type WrittenLeaf } from '../helpers/test-pki.ts';

/**
 * Issue 9 "Must have" 6: every accepted socket reaches exactly one close path whatever order
 * events arrive in. The gateway runs in a child process so its socket fds are counted from
 * outside; after each case tunnels, limiter, fds and the audit pairing must be back.
 */
describe('every socket reaches one close path (child gateway, fds counted)', () => {
  let pki: TestPki;
  let bookinfo: WrittenLeaf;
  let gw: ChildGateway;
  let baselineFds: number;
  let banner: ScriptedUpstream;
  let echo: ScriptedUpstream;
  let resetter: ScriptedUpstream;
  let gated: GatedUpstream;

  const assertClean = (report: LeakReport, what: string) => {
    const detail = `${what}: ${JSON.stringify({ ...report, unpaired: report.unpaired.length })} (baseline fds ${baselineFds})`;
    assert.equal(report.connections, 0, `/connections not empty after ${detail}`);
    assert.equal(report.activeTunnels, 0, `egw_active_tunnels not 0 after ${detail}`);
    assert.equal(report.identityConnections, 0, `limiter not 0 after ${detail}`);
    assert.ok(report.socketFds <= baselineFds, `socket fds above baseline after ${detail}`);
    assert.deepEqual(report.unpaired, [], `egress-permitted without one egress-closed after ${detail}`);
  };
  const closedFor = (permittedBefore: number) =>
    gw
      .records()
      .filter((r) => r.action === 'egress-closed')
      .slice(permittedBefore);

  before(async () => {
    pki = await createTestPki();
    bookinfo = await pki.workload('bookinfo', 'productpage');
    [banner, echo, resetter, gated] = await Promise.all([
      answerAndClose(),
      echoUpstream(),
      resetMidStream(),
      gatedUpstream(),
    ]);
    gw = await startChildGateway(pki, {
      listeners: [
        { name: 'egress', listen: '127.0.0.1:0', mode: 'connect' },
        { name: 'banner', listen: '127.0.0.1:0', mode: 'tcp', upstream: `127.0.0.1:${banner.port}` },
        { name: 'resetter', listen: '127.0.0.1:0', mode: 'tcp', upstream: `127.0.0.1:${resetter.port}` },
        { name: 'gated', listen: '127.0.0.1:0', mode: 'tcp', upstream: `127.0.0.1:${gated.port}` },
      ],
      rules: [
        { name: 'bookinfo', from: { namespaces: ['bookinfo'] }, to: { cidrs: ['127.0.0.0/8'] }, action: 'allow' },
      ],
      // The default 5 m idle timeout stays: nothing here may rely on it to clean up.
      timeouts: { connect: '15s' },
      // Handshake resets from 127.0.0.1 are part of these cases; the per-source penalty
      // (test/attacks/handshake-penalty.test.ts) would otherwise shut that source out.
      limits: { handshakeFailuresPerSource: 0 },
      admin: { listen: '127.0.0.1:0', watch: false },
    });
    // Warm up once (admin keep-alive socket, first tunnel), then take the baseline.
    const warm = await rawTlsClient(gw.port('egress'), bookinfo, pki.rootPath);
    warm.tls.write(`CONNECT 127.0.0.1:${echo.port} HTTP/1.1\r\n\r\nping`);
    assert.ok(await pollUntil(() => warm.received().endsWith('ping'), 5_000), warm.received());
    warm.tls.end();
    const settled = await gw.settled(Number.POSITIVE_INFINITY);
    baselineFds = settled.socketFds;
  });
  after(async () => {
    await gw?.stop();
    for (const upstream of [banner, echo, resetter, gated]) upstream?.close();
    pki?.cleanup();
  });

  it('tcp mode: openssl s_time -new (EOF without close_notify, upstream answers and closes) leaks nothing', async () => {
    const before = gw.records().length;
    // Two seconds, and a floor well under what an idle machine makes (~100): a busy one made 9 in one.
    await sTimeNew(gw.port('banner'), bookinfo, pki.rootPath, 2);
    const permitted = gw
      .records()
      .slice(before)
      .filter((r) => r.action === 'egress-permitted').length;
    assert.ok(permitted >= 5, `s_time made only ${permitted} tunnels`);
    assertClean(await gw.settled(baselineFds, 20_000), `${permitted} s_time connections`);
  });

  it('connect and tcp mode: a client that resets while the upstream dial is in flight leaks nothing', async () => {
    const before = gw.records().length;
    const viaConnect = await rawTlsClient(gw.port('egress'), bookinfo, pki.rootPath);
    viaConnect.tls.write(`CONNECT 127.0.0.1:${gated.port} HTTP/1.1\r\n\r\n`);
    const viaTcp = await rawTlsClient(gw.port('gated'), bookinfo, pki.rootPath);
    // Positive control first: both connections reached the limiter, so both dials are in flight;
    // then nothing was answered and nothing decided while they are.
    await waitUntil(
      async () => (await gw.metric('egw_identity_connections')) === 2,
      5_000,
      'both connections to be counted by the limiter',
    );
    assert.equal(await gw.metric('egw_identity_connections'), 2);
    assert.equal(viaConnect.received(), '');
    assert.deepEqual(gw.records().slice(before), []);
    viaConnect.raw.resetAndDestroy();
    viaTcp.raw.resetAndDestroy();
    gated.open();
    // The dials complete after the clients are gone: each gets its permit and its close.
    const paired = await pollUntil(
      () =>
        gw
          .records()
          .slice(before)
          .filter((r) => r.action === 'egress-closed').length >= 2,
      10_000,
    );
    assert.ok(paired, JSON.stringify(gw.records().slice(before)));
    assert.equal(
      gw
        .records()
        .slice(before)
        .filter((r) => r.action === 'egress-permitted').length,
      2,
    );
    assertClean(await gw.settled(baselineFds), 'resets during the dial');
  });

  it('connect mode: a client that sends FIN without close_notify in a tunnel leaks nothing', async () => {
    const client = await rawTlsClient(gw.port('egress'), bookinfo, pki.rootPath);
    client.tls.write(`CONNECT 127.0.0.1:${echo.port} HTTP/1.1\r\n\r\nhello`);
    assert.ok(await pollUntil(() => client.received().endsWith('hello'), 5_000), client.received());
    client.raw.end(); // TCP FIN beneath TLS
    assertClean(await gw.settled(baselineFds), 'FIN without close_notify');
  });

  it('a client reset mid-stream and an upstream reset mid-stream each close the tunnel', async () => {
    const before = gw.records().length;
    const client = await rawTlsClient(gw.port('egress'), bookinfo, pki.rootPath);
    client.tls.write(`CONNECT 127.0.0.1:${echo.port} HTTP/1.1\r\n\r\nhello`);
    assert.ok(await pollUntil(() => client.received().endsWith('hello'), 5_000), client.received());
    client.raw.resetAndDestroy();
    const upstreamReset = await rawTlsClient(gw.port('resetter'), bookinfo, pki.rootPath);
    assert.ok(await upstreamReset.closedWithin(5_000), 'the client of a reset upstream stays open');
    assert.equal(upstreamReset.received(), 'partial ');
    assertClean(await gw.settled(baselineFds), 'resets mid-stream');
    const reasons = closedFor(0)
      .filter((r) =>
        gw
          .records()
          .slice(before)
          .some((b) => b.connectionId === r.connectionId),
      )
      .map((r) => r.reason);
    assert.ok(
      reasons.some((r) => /upstream: ECONNRESET/.test(r)),
      reasons.join('; '),
    );
  });

  it('resets mid-handshake and a client gone before the request leave no socket behind', async () => {
    for (let i = 0; i < 20; i += 1) await resetMidHandshake(gw.port('egress'));
    const idle = await rawTlsClient(gw.port('egress'), bookinfo, pki.rootPath);
    assert.ok(gw.socketFds() > baselineFds, 'positive control: the authenticated client holds a gateway socket');
    idle.raw.resetAndDestroy();
    assertClean(await gw.settled(baselineFds), 'resets mid-handshake');
  });
});
