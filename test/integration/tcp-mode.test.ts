import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { type ConnectionOptions, connect as tlsConnect } from 'node:tls';
import { curlViaGateway } from '../helpers/curl.ts';
import { type GatewayFixture, startGatewayFixture } from '../helpers/gateway-fixture.ts';
import { sClient } from '../helpers/openssl-client.ts';
import { runCli } from '../helpers/run-command.ts';
import type { TestGateway } from '../helpers/test-gateway.ts';
import type { TestPki, WrittenLeaf } from '../helpers/test-pki.ts';
import { startTinyproxy, type Tinyproxy } from '../helpers/tinyproxy.ts';

describe('tcp mode (fixed upstream, like a BIG-IP virtual server)', () => {
  let pki: TestPki;
  let gw: TestGateway;
  let echoPort: number;
  let tinyproxy: Tinyproxy;
  let bookinfo: WrittenLeaf;
  let other: WrittenLeaf;

  let fixture: GatewayFixture;

  before(async () => {
    tinyproxy = await startTinyproxy();
    fixture = await startGatewayFixture(({ echoPort }) => ({
      listeners: [
        {
          name: 'legacy-proxy',
          listen: '127.0.0.1:0',
          mode: 'tcp',
          upstream: `127.0.0.1:${tinyproxy.port}`,
          snat: '127.0.0.2',
        },
        { name: 'echo-vs', listen: '127.0.0.1:0', mode: 'tcp', upstream: `127.0.0.1:${echoPort}`, snat: '127.0.0.3' },
        // RFC 6761: .invalid never resolves.
        { name: 'unresolvable-vs', listen: '127.0.0.1:0', mode: 'tcp', upstream: 'upstream.invalid:9' },
      ],
      rules: [{ name: 'bookinfo-only', from: { namespaces: ['bookinfo'] }, action: 'allow' }],
    }));
    ({ pki, gw, echoPort } = fixture);
    bookinfo = await pki.workload('bookinfo', 'productpage');
    other = await pki.workload('sm-apigw-a', 'default');
  });
  after(async () => {
    await fixture?.close();
    await tinyproxy?.stop();
  });

  it('relays the decrypted stream to the fixed upstream from the SNAT address (openssl s_client)', async () => {
    const result = await sClient(gw.port('echo-vs'), {
      client: bookinfo,
      caPath: pki.rootPath,
      input: 'GET /vs HTTP/1.0\r\n\r\n',
      waitForServerClose: true,
    });
    assert.match(result.stdout, /"peerAddress":"127\.0\.0\.3"/);
    assert.match(result.stdout, /"url":"\/vs"/);
    const closed = await gw.waitForRecord((r) => r.action === 'egress-closed' && r.listener === 'echo-vs');
    assert.equal(closed.snat?.ip, '127.0.0.3');
    assert.equal(closed.rule?.name, 'bookinfo-only');
    assert.ok((closed.bytesFromClient ?? 0) >= 'GET /vs HTTP/1.0\r\n\r\n'.length);
    assert.ok((closed.durationNs ?? 0) > 0);
  });

  it('resets a denied identity, like the iRule reject (openssl s_client)', async () => {
    const result = await sClient(gw.port('echo-vs'), {
      client: other,
      caPath: pki.rootPath,
      input: 'GET / HTTP/1.0\r\n\r\n',
      waitForServerClose: true,
    });
    assert.doesNotMatch(result.stdout, /peerAddress/);
    assert.match(`${result.stdout}\n${result.stderr}`, /reset by peer|errno=104|Connection reset/i);
    const record = await gw.waitForRecord((r) => r.action === 'egress-rejected' && r.listener === 'echo-vs');
    assert.equal(record.identity?.namespace, 'sm-apigw-a');
    assert.equal(record.code, 'EGW_POLICY_DENIED');
  });

  it('policy check gives the same verdict as live traffic for an upstream that does not resolve (issue 10 item 7)', async () => {
    const check = (listener: string) =>
      runCli([
        'policy',
        'check',
        '--config',
        gw.configPath,
        '--spiffe-id',
        'spiffe://cluster.local/ns/bookinfo/sa/productpage',
        '--listener',
        listener,
      ]);
    // Positive control: the same identity on a resolvable upstream is allowed, by both.
    const allowed = await check('echo-vs');
    assert.equal(allowed.code, 0, allowed.stderr);
    assert.match(allowed.stdout, /^ALLOW listener=echo-vs rule=bookinfo-only ip=127\.0\.0\.1 snat=127\.0\.0\.3/);

    const live = await sClient(gw.port('unresolvable-vs'), {
      client: bookinfo,
      caPath: pki.rootPath,
      input: 'GET / HTTP/1.0\r\n\r\n',
      waitForServerClose: true,
    });
    assert.match(`${live.stdout}\n${live.stderr}`, /reset by peer|errno=104|Connection reset/i);
    const record = await gw.waitForRecord((r) => r.action === 'egress-rejected' && r.listener === 'unresolvable-vs');
    assert.equal(record.code, 'EGW_UPSTREAM_DNS');
    assert.match(record.reason, /cannot resolve upstream\.invalid: ENOTFOUND/, "the resolver's own error is kept");

    const denied = await check('unresolvable-vs');
    assert.equal(denied.code, 1, denied.stderr);
    assert.match(
      denied.stdout,
      /^DENY listener=unresolvable-vs rule=bookinfo-only reset code=EGW_UPSTREAM_DNS: cannot resolve upstream\.invalid/,
    );
  });

  it('reaches a target through tinyproxy behind the tcp listener (curl --proxy https://)', async () => {
    const result = await curlViaGateway(
      gw.port('legacy-proxy'),
      bookinfo,
      pki.rootPath,
      `http://127.0.0.1:${echoPort}/via-tinyproxy`,
    );
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /"url":"\/via-tinyproxy"/);
    assert.match(
      tinyproxy.log(),
      /Connect \(file descriptor \d+\): 127\.0\.0\.2/,
      'tinyproxy sees the SNAT address as its client',
    );
  });

  it('still returns the upstream answer after the client half-closes its side', async () => {
    // An upstream that answers only once it has seen the client's FIN.
    const halfCloseUpstream = createServer({ allowHalfOpen: true }, (socket) => {
      let got = 0;
      socket.on('data', (chunk) => {
        got += chunk.length;
      });
      socket.on('end', () => setTimeout(() => socket.end(`got ${got} bytes before FIN`), 100));
    });
    await new Promise<void>((resolve) => halfCloseUpstream.listen(0, '127.0.0.1', () => resolve()));
    const gw2 = await fixture.startGateway({
      listeners: [
        {
          name: 'half',
          listen: '127.0.0.1:0',
          mode: 'tcp',
          upstream: `127.0.0.1:${(halfCloseUpstream.address() as AddressInfo).port}`,
        },
      ],
      rules: [{ name: 'bookinfo-only', from: { namespaces: ['bookinfo'] }, action: 'allow' }],
    });
    try {
      const socket = tlsConnect({
        host: '127.0.0.1',
        port: gw2.port('half'),
        ca: readFileSync(pki.rootPath),
        cert: readFileSync(bookinfo.certPath),
        key: readFileSync(bookinfo.keyPath),
        servername: 'localhost',
        allowHalfOpen: true,
      } as ConnectionOptions);
      let answer = '';
      socket.on('data', (chunk) => {
        answer += chunk;
      });
      socket.once('secureConnect', () => socket.end('hello'));
      await new Promise((resolve) => socket.once('close', resolve));
      assert.equal(answer, 'got 5 bytes before FIN');
    } finally {
      await gw2.close();
      halfCloseUpstream.close();
    }
  });

  it('curl reports a reset for a denied identity through the tcp listener', async () => {
    const result = await curlViaGateway(gw.port('legacy-proxy'), other, pki.rootPath, `http://127.0.0.1:${echoPort}/`);
    // curl reports the reset as 56 (recv), 55 (send/getpeername) or 35 (TLS), depending on timing.
    assert.ok([35, 52, 55, 56].includes(result.code ?? 0), `curl exit ${result.code}: ${result.stderr}`);
    assert.doesNotMatch(result.stdout, /peerAddress/);
  });
});
