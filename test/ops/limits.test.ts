import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { curlViaGateway } from '../helpers/curl.ts';
import {
  type FixtureTargets,
  type GatewayFixture,
  startFixtureTargets,
  startGatewayFixture,
} from '../helpers/gateway-fixture.ts';
import { sClient } from '../helpers/openssl-client.ts';
import { waitUntil } from '../helpers/poll-until.ts';
import type { TestGateway } from '../helpers/test-gateway.ts';
import type { TestPki, WrittenLeaf } from '../helpers/test-pki.ts';
import { openTunnel } from '../helpers/tunnel-client.ts';

/** Resolves when the socket closes; rejects if it stays open past `ms`. */
function closesWithin(socket: import('node:net').Socket, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`still open after ${ms} ms`)), ms);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

describe('limits and timeouts', () => {
  let pki: TestPki;
  let gw: TestGateway;
  let echoPort: number;
  let tcpEchoPort: number;
  let bookinfo: WrittenLeaf;
  let reviews: WrittenLeaf;
  let fixture: GatewayFixture;

  before(async () => {
    fixture = await startGatewayFixture(
      ({ tcpEchoPort }) => ({
        listeners: [
          { name: 'egress', listen: '127.0.0.1:0', mode: 'connect' },
          { name: 'small', listen: '127.0.0.1:0', mode: 'connect', maxConnections: 2 },
          { name: 'legacy', listen: '127.0.0.1:0', mode: 'tcp', upstream: `127.0.0.1:${tcpEchoPort}` },
        ],
        rules: [
          { name: 'bookinfo', from: { namespaces: ['bookinfo'] }, to: { cidrs: ['127.0.0.0/8'] }, action: 'allow' },
        ],
        timeouts: { handshake: '400ms', requestHead: '400ms', idle: '600ms' },
        limits: { maxHeaderBytes: 4096, maxConnectionsPerIdentity: 2 },
        admin: { listen: '127.0.0.1:0', watch: false },
      }),
      { tcpEchoes: 1 },
    );
    ({ pki, gw, echoPort, tcpEchoPort } = fixture);
    bookinfo = await pki.workload('bookinfo', 'productpage');
    reviews = await pki.workload('bookinfo', 'reviews');
  });
  after(async () => {
    await fixture?.close();
  });

  it('closes a connection whose TLS handshake does not finish in time', async () => {
    const socket = tcpConnect(gw.port('egress'), '127.0.0.1');
    socket.on('error', () => {});
    await new Promise((r) => socket.once('connect', r));
    socket.write(Buffer.from([0x16, 0x03, 0x01])); // a first byte of a ClientHello, then nothing
    await closesWithin(socket, 3000);
    const record = await gw.waitForRecord((r) => r.code === 'EGW_TLS_HANDSHAKE_TIMEOUT');
    assert.equal(record.action, 'identity-rejected');
  });

  it('closes an authenticated connection that sends no request head in time (slowloris)', async () => {
    const socket = tlsConnect({
      host: '127.0.0.1',
      port: gw.port('egress'),
      ca: readFileSync(pki.rootPath),
      cert: readFileSync(bookinfo.certPath),
      key: readFileSync(bookinfo.keyPath),
      servername: 'localhost',
    });
    socket.on('error', () => {});
    await new Promise((r) => socket.once('secureConnect', r));
    socket.write('CONNECT 127.0.0.1:1 HTTP/1.1\r\nX-Slow: ');
    await closesWithin(socket, 3000);
    const record = await gw.waitForRecord(
      (r) => r.code === 'EGW_PROXY_BAD_REQUEST' && /no complete request head within 400 ms/.test(r.reason),
    );
    assert.equal(record.identity?.spiffeId, 'spiffe://cluster.local/ns/bookinfo/sa/productpage');
  });

  /** Sends `text` one byte every `everyMs` until the socket closes; resolves with the bytes sent. */
  const drip = (socket: import('node:tls').TLSSocket, text: string, everyMs: number) =>
    new Promise<number>((resolve) => {
      let sent = 0;
      const timer = setInterval(() => {
        if (socket.destroyed || sent >= text.length) return;
        socket.write(text[sent] as string);
        sent += 1;
      }, everyMs);
      socket.once('close', () => {
        clearInterval(timer);
        resolve(sent);
      });
    });

  it('closes a client that drips its request head one byte at a time (wall clock, not idle timer)', async () => {
    const socket = tlsConnect({
      host: '127.0.0.1',
      port: gw.port('egress'),
      ca: readFileSync(pki.rootPath),
      cert: readFileSync(bookinfo.certPath),
      key: readFileSync(bookinfo.keyPath),
      servername: 'localhost',
    });
    socket.on('error', () => {});
    await new Promise((r) => socket.once('secureConnect', r));
    const head = `CONNECT 127.0.0.1:${tcpEchoPort} HTTP/1.1\r\nX-Drip: ${'a'.repeat(200)}\r\n\r\n`;
    const sent = await drip(socket, head, 100);
    assert.ok(sent < head.length, `closed after ${sent} of ${head.length} bytes`);
  });

  it('applies the request-head deadline again after each response on a kept-alive connection', async () => {
    const socket = tlsConnect({
      host: '127.0.0.1',
      port: gw.port('egress'),
      ca: readFileSync(pki.rootPath),
      cert: readFileSync(bookinfo.certPath),
      key: readFileSync(bookinfo.keyPath),
      servername: 'localhost',
    });
    socket.on('error', () => {});
    await new Promise((r) => socket.once('secureConnect', r));
    let received = '';
    socket.on('data', (chunk) => {
      received += chunk;
    });
    socket.write(`GET http://127.0.0.1:${echoPort}/first HTTP/1.1\r\nHost: 127.0.0.1:${echoPort}\r\n\r\n`);
    await waitUntil(
      () => received.includes('/first'),
      5_000,
      () => `the echo of /first (got: ${received})`,
      20,
    );
    const next = `GET http://127.0.0.1:${echoPort}/second HTTP/1.1\r\nX-Drip: ${'a'.repeat(200)}\r\n\r\n`;
    const sent = await drip(socket, next, 100);
    assert.ok(sent < next.length, `closed after ${sent} of ${next.length} bytes`);
    assert.doesNotMatch(received, /\/second/);
  });

  it('answers 431 to a request head larger than limits.maxHeaderBytes', async () => {
    const result = await curlViaGateway(gw.port('egress'), bookinfo, pki.rootPath, `http://127.0.0.1:${echoPort}/`, [
      '-p',
      '-v',
      '--proxy-header',
      `X-Big: ${'a'.repeat(8000)}`,
    ]);
    assert.match(result.stderr, /< HTTP\/1\.1 431/);
  });

  it('closes a tunnel idle for longer than timeouts.idle', async () => {
    const tunnel = await openTunnel(gw.port('egress'), reviews, pki.rootPath, `127.0.0.1:${tcpEchoPort}`);
    await closesWithin(tunnel.socket, 5000);
    const record = await gw.waitForRecord((r) => r.action === 'egress-closed' && /idle for 600 ms/.test(r.reason));
    assert.equal(record.identity?.serviceAccount, 'reviews');
  });

  it('resets connections above a listener maxConnections and audits them', async () => {
    const held = [
      await openTunnel(gw.port('small'), bookinfo, pki.rootPath, `127.0.0.1:${tcpEchoPort}`),
      await openTunnel(gw.port('small'), reviews, pki.rootPath, `127.0.0.1:${tcpEchoPort}`),
    ];
    try {
      const third = await sClient(gw.port('small'), {
        client: bookinfo,
        caPath: pki.rootPath,
        waitForServerClose: true,
      });
      assert.notEqual(third.code, 0);
      const record = await gw.waitForRecord((r) => r.code === 'EGW_LIMIT_LISTENER_CONNECTIONS');
      assert.equal(record.listener, 'small');
    } finally {
      for (const tunnel of held) tunnel.close();
    }
  });

  it('answers 429 with Retry-After above maxConnectionsPerIdentity, and counts it', async () => {
    const client = await pki.workload('bookinfo', 'ratings');
    const held = [
      await openTunnel(gw.port('egress'), client, pki.rootPath, `127.0.0.1:${tcpEchoPort}`),
      await openTunnel(gw.port('egress'), client, pki.rootPath, `127.0.0.1:${tcpEchoPort}`),
    ];
    try {
      const result = await curlViaGateway(gw.port('egress'), client, pki.rootPath, `http://127.0.0.1:${echoPort}/`, [
        '-p',
        '-v',
      ]);
      assert.match(result.stderr, /< HTTP\/1\.1 429/);
      assert.match(result.stderr, /< Retry-After: 1/);
      assert.match(result.stderr, /error=connection_limit_reached/);
      const other = await curlViaGateway(gw.port('egress'), bookinfo, pki.rootPath, `http://127.0.0.1:${echoPort}/`, [
        '-p',
      ]);
      assert.equal(other.code, 0, 'other identities are not affected');
      const metrics = await (await fetch(`http://127.0.0.1:${gw.gateway.adminAddress?.port}/metrics`)).text();
      assert.match(metrics, /^egw_limit_rejections_total\{listener="egress",limit="identity_connections"\} 1$/m);
    } finally {
      for (const tunnel of held) tunnel.close();
    }
  });

  it('resets a tcp-mode connection above maxConnectionsPerIdentity', async () => {
    const client = await pki.workload('bookinfo', 'details');
    const held = [
      await openTunnel(gw.port('egress'), client, pki.rootPath, `127.0.0.1:${tcpEchoPort}`),
      await openTunnel(gw.port('egress'), client, pki.rootPath, `127.0.0.1:${tcpEchoPort}`),
    ];
    try {
      const result = await sClient(gw.port('legacy'), {
        client,
        caPath: pki.rootPath,
        input: 'hello\n',
        waitForServerClose: true,
      });
      assert.doesNotMatch(result.stdout, /^hello$/m);
      const record = await gw.waitForRecord(
        (r) => r.listener === 'legacy' && r.code === 'EGW_LIMIT_IDENTITY_CONNECTIONS',
      );
      assert.equal(record.identity?.serviceAccount, 'details');
    } finally {
      for (const tunnel of held) tunnel.close();
    }
  });
});

describe('bare TCP connects (health checks)', () => {
  it('does not audit a bare TCP connect-and-close, and releases it long before the handshake timeout', async () => {
    const fixture = await startGatewayFixture(
      () => ({
        listeners: [{ name: 'egress', listen: '127.0.0.1:0', mode: 'connect' }],
        timeouts: { handshake: '10s' },
      }),
      { httpEchoes: [] },
    );
    const { gw } = fixture;
    try {
      const socket = tcpConnect(gw.port('egress'), '127.0.0.1');
      socket.on('error', () => {});
      await new Promise((r) => socket.once('connect', r));
      const localPort = socket.localPort;
      socket.end();
      await closesWithin(socket, 3000);
      // Positive control, observed the same way (records by source port): a TLS client without a
      // certificate, opened after the bare connect closed, is audited. Its record arriving is the
      // event that bounds the wait, instead of a sleep.
      const tls = tlsConnect({ host: '127.0.0.1', port: gw.port('egress'), rejectUnauthorized: false });
      tls.on('error', () => {});
      await new Promise((r) => tls.once('connect', r));
      const controlPort = tls.localPort;
      await gw.waitForRecord((r) => r.source.port === controlPort);
      tls.destroy();
      assert.equal(gw.records.filter((r) => r.source.port === localPort).length, 0);
    } finally {
      await fixture.close();
    }
  });
});

describe('per-identity new-connection rate', () => {
  it('answers 429 with Retry-After once the token bucket is empty', async () => {
    const fixture = await startGatewayFixture(() => ({
      listeners: [{ name: 'egress', listen: '127.0.0.1:0', mode: 'connect' }],
      rules: [{ name: 'all', to: { cidrs: ['127.0.0.0/8'] }, action: 'allow' }],
      limits: { newConnectionsPerSecondPerIdentity: 0.5, newConnectionBurstPerIdentity: 1 },
    }));
    const { pki, gw } = fixture;
    try {
      const client = await pki.workload('bookinfo', 'productpage');
      const url = `http://127.0.0.1:${fixture.echoPort}/`;
      const first = await curlViaGateway(gw.port('egress'), client, pki.rootPath, url, ['-p']);
      assert.equal(first.code, 0, first.stderr);
      const second = await curlViaGateway(gw.port('egress'), client, pki.rootPath, url, ['-p', '-v']);
      assert.match(second.stderr, /< HTTP\/1\.1 429/);
      assert.match(second.stderr, /< Retry-After: [12]/);
      const record = await gw.waitForRecord((r) => r.code === 'EGW_LIMIT_IDENTITY_RATE');
      assert.equal(record.action, 'egress-rejected');
    } finally {
      await fixture.close();
    }
  });
});

describe('pre-handshake sockets (issue 9 item 4)', () => {
  // One PKI for the suite, no target: each test starts its own gateway on it.
  let targets: FixtureTargets;
  before(async () => {
    targets = await startFixtureTargets({ httpEchoes: [] });
  });
  after(async () => {
    await targets?.close();
  });
  /** The value of one Prometheus series (0 when absent). */
  const metric = async (gw: TestGateway, series: string) => {
    const text = await (await fetch(`http://127.0.0.1:${gw.gateway.adminAddress?.port}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith(`${series} `));
    return line ? Number(line.slice(series.length + 1)) : 0;
  };
  const idleFrom = async (port: number, localAddress: string) => {
    const socket = tcpConnect({ host: '127.0.0.1', port, localAddress });
    socket.on('error', () => {});
    await new Promise((r) => socket.once('connect', r));
    return socket;
  };
  /** Resolves when a new socket from `localAddress` is closed by the gateway (it may never see 'connect'). */
  const refusedFrom = (port: number, localAddress: string, ms: number) => {
    const socket = tcpConnect({ host: '127.0.0.1', port, localAddress });
    socket.on('error', () => {});
    return closesWithin(socket, ms);
  };

  it('closes a socket that sends no byte at timeouts.firstByte, but gives one that did the handshake timeout', async () => {
    const gw = await targets.startGateway({
      listeners: [{ name: 'egress', listen: '127.0.0.1:0', mode: 'connect' }],
      timeouts: { handshake: '2s', firstByte: '300ms' },
      admin: { listen: '127.0.0.1:0', watch: false },
    });
    try {
      const silent = await idleFrom(gw.port('egress'), '127.0.0.6');
      const started = await idleFrom(gw.port('egress'), '127.0.0.7');
      started.write(Buffer.from([0x16, 0x03, 0x01])); // the first bytes of a ClientHello, then nothing
      await closesWithin(silent, 1500);
      assert.equal(started.destroyed, false, 'a socket that sent a byte is not held to the first-byte deadline');
      assert.equal(
        await metric(gw, 'egw_prehandshake_rejections_total{listener="egress",reason="first_byte_timeout"}'),
        1,
      );
      await closesWithin(started, 3000);
      const record = await gw.waitForRecord((r) => r.code === 'EGW_TLS_HANDSHAKE_TIMEOUT');
      assert.equal(record.source.ip, '127.0.0.7');
      assert.equal(
        gw.records.filter((r) => r.source.ip === '127.0.0.6' && r.action !== 'handshake-refused-aggregate').length,
        0,
      );
    } finally {
      await gw.close();
    }
  });

  it('refuses sockets beyond limits.maxPreHandshakeSockets and the per-source cap, and counts both', async () => {
    const { pki } = targets;
    const gw = await targets.startGateway({
      listeners: [{ name: 'egress', listen: '127.0.0.1:0', mode: 'connect' }],
      timeouts: { firstByte: '2s' },
      limits: { maxPreHandshakeSockets: 5, maxPreHandshakeSocketsPerSource: 3 },
      admin: { listen: '127.0.0.1:0', watch: false },
    });
    const port = gw.port('egress');
    const held: import('node:net').Socket[] = [];
    try {
      for (let i = 0; i < 3; i++) held.push(await idleFrom(port, '127.0.0.5'));
      await refusedFrom(port, '127.0.0.5', 1000);
      for (let i = 0; i < 2; i++) held.push(await idleFrom(port, '127.0.0.6'));
      await refusedFrom(port, '127.0.0.7', 1000);
      assert.equal(held.filter((s) => !s.destroyed).length, 5, 'the admitted sockets are still open');
      assert.equal(await metric(gw, 'egw_prehandshake_sockets{listener="egress"}'), 5);
      assert.equal(await metric(gw, 'egw_prehandshake_rejections_total{listener="egress",reason="source_limit"}'), 1);
      assert.equal(await metric(gw, 'egw_prehandshake_rejections_total{listener="egress",reason="listener_limit"}'), 1);
      // Once the idle ones hit the first-byte deadline, the budget is free again for a real client.
      await Promise.all(held.map((s) => closesWithin(s, 4000)));
      const client = await pki.workload('bookinfo', 'productpage');
      const ok = await sClient(port, { client, caPath: pki.rootPath, input: '' });
      assert.match(ok.stdout, /Verification: OK|Verify return code: 0/);
      assert.equal(await metric(gw, 'egw_prehandshake_sockets{listener="egress"}'), 0);
    } finally {
      for (const socket of held) socket.destroy();
      await gw.close();
    }
  });
});
