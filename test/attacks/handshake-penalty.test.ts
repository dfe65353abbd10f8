import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { connect } from 'node:tls';
import { curlViaGateway } from '../helpers/curl.ts';
import { type GatewayFixture, startGatewayFixture } from '../helpers/gateway-fixture.ts';
import type { TestGateway } from '../helpers/test-gateway.ts';
import { createTestPki, type TestPki, type WrittenLeaf } from '../helpers/test-pki.ts';

const ATTACKER = '127.0.0.9';
const FAILURES = 8;

/** The value of one Prometheus series from the admin API (0 when absent). */
async function metric(gw: TestGateway, series: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${gw.gateway.adminAddress?.port}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

/**
 * One TLS client from `source` with `leaf`'s certificate: whether the handshake got as far as the
 * client's 'secureConnect' (TLS 1.3: before the server checked the client certificate), and how it ended.
 */
function handshakeFrom(port: number, source: string, leaf: WrittenLeaf): Promise<{ secure: boolean; end: string }> {
  return new Promise((resolve) => {
    let secure = false;
    // tls.connect has no localAddress: bind the TCP socket first.
    const tcp = tcpConnect({ host: '127.0.0.1', port, localAddress: source });
    const socket = connect({
      socket: tcp,
      cert: readFileSync(leaf.certPath),
      key: readFileSync(leaf.keyPath),
      rejectUnauthorized: false,
    });
    const timer = setTimeout(() => finish('timeout'), 10_000);
    const finish = (end: string) => {
      clearTimeout(timer);
      socket.destroy();
      tcp.destroy();
      resolve({ secure, end });
    };
    socket.once('secureConnect', () => {
      secure = true;
    });
    socket.once('error', (error: NodeJS.ErrnoException) => finish(error.code ?? 'error'));
    socket.once('close', () => finish('closed'));
    socket.resume();
  });
}

describe('attack: repeated refused handshakes from one source (issue 9, found 2)', () => {
  let pki: TestPki;
  let rogue: TestPki;
  let gw: TestGateway;
  let url: string;
  let client: WrittenLeaf;
  let untrusted: WrittenLeaf;
  let fixture: GatewayFixture;

  before(async () => {
    fixture = await startGatewayFixture(() => ({
      listeners: [{ name: 'egress', listen: '127.0.0.1:0', mode: 'connect' }],
      rules: [{ name: 'local', to: { cidrs: ['127.0.0.0/8'] }, action: 'allow' }],
      limits: {
        preHandshakeAuditInterval: '1s',
        handshakeFailuresPerSource: FAILURES,
        // Wide enough that a loaded machine cannot let the window or the penalty run out mid-test.
        handshakeFailureWindow: '60s',
        handshakeFailurePenalty: '120s',
      },
      admin: { listen: '127.0.0.1:0', watch: false },
    }));
    ({ pki, gw } = fixture);
    url = `http://127.0.0.1:${fixture.echoPort}/`;
    rogue = await createTestPki(); // another root: its leaves chain to nothing the gateway trusts
    client = await pki.workload('bookinfo', 'productpage');
    untrusted = await rogue.workload('evil', 'x');
  });
  after(async () => {
    await fixture?.close();
    rogue?.cleanup();
  });

  const legit = async (extra: string[] = []) =>
    curlViaGateway(gw.port('egress'), client, pki.rootPath, url, [
      '-p',
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      ...extra,
    ]);
  const penaltySeries = 'egw_prehandshake_rejections_total{listener="egress",reason="source_penalty"}';

  it('resets a source at accept after repeated identity refusals, and serves other sources meanwhile', async (t) => {
    const before = await legit(['--interface', ATTACKER]);
    assert.equal(before.stdout, '200', `positive control, a valid client from ${ATTACKER}: ${before.stderr}`);

    // The first failures reach TLS and the identity stage, and are audited as identity-rejected.
    for (let i = 0; i < FAILURES; i++) {
      const attempt = await handshakeFrom(gw.port('egress'), ATTACKER, untrusted);
      assert.equal(attempt.secure, true, `attempt ${i + 1} completed its TLS handshake (${attempt.end})`);
    }
    const rejected = () => gw.records.filter((r) => r.action === 'identity-rejected' && r.source.ip === ATTACKER);
    await gw.waitForRecord(() => rejected().length >= FAILURES, 10_000);
    assert.equal(rejected().length, FAILURES);
    assert.equal(await metric(gw, penaltySeries), 0, 'no penalty before the threshold');

    // From then on its sockets are reset at accept: no TLS at all, no per-socket record.
    const later = [];
    for (let i = 0; i < 5; i++) later.push(await handshakeFrom(gw.port('egress'), ATTACKER, untrusted));
    for (const attempt of later) assert.equal(attempt.secure, false, `reset before TLS (${attempt.end})`);
    assert.equal(await metric(gw, penaltySeries), 5);
    assert.equal(rejected().length, FAILURES, 'penalised sockets never reached the identity stage');

    // A valid certificate from the penalised source is refused too: the penalty is the source's.
    const sameSource = await legit(['--interface', ATTACKER]);
    assert.notEqual(sameSource.stdout, '200', 'a valid client from the penalised source is reset');
    assert.equal(await metric(gw, penaltySeries), 6);

    // Another source is unaffected, and succeeding there does not clear the attacker's penalty.
    for (let i = 0; i < 3; i++) {
      const other = await legit();
      assert.equal(other.stdout, '200', `a client from 127.0.0.1 during the penalty: ${other.stderr}`);
    }
    const still = await handshakeFrom(gw.port('egress'), ATTACKER, untrusted);
    assert.equal(still.secure, false);
    assert.equal(await metric(gw, penaltySeries), 7);

    const aggregate = await gw.waitForRecord(
      (r) =>
        r.action === 'handshake-refused-aggregate' && r.source.ip === ATTACKER && !!r.refusals?.byReason.source_penalty,
      10_000,
    );
    assert.equal(aggregate.code, 'EGW_PREHANDSHAKE_REFUSED');
    assert.match(aggregate.reason, /source_penalty=\d+/);
    t.diagnostic(aggregate.reason);
  });
});
