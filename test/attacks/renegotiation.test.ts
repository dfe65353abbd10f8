import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { connect, type TLSSocket } from 'node:tls';
import { type GatewayFixture, startGatewayFixture } from '../helpers/gateway-fixture.ts';
import type { TestGateway } from '../helpers/test-gateway.ts';
import type { TestPki } from '../helpers/test-pki.ts';

function nextData(socket: TLSSocket, timeoutMs = 5_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no data in time')), timeoutMs);
    socket.once('data', (chunk: Buffer) => {
      clearTimeout(timer);
      resolve(chunk.toString('latin1'));
    });
  });
}

// Issue 9, found 6: on the hand-built server TLSSocket Node enforces neither its renegotiation
// limit nor disableRenegotiation(); a TLS 1.2 client renegotiated 1,000 times, and could swap its
// certificate for one from an untrusted CA mid-connection. SSL_OP_NO_RENEGOTIATION refuses it:
// the server answers the new ClientHello with a no_renegotiation alert and the handshake never
// completes (Node's renegotiate callback, called on success, is not called).
describe('attack: TLS 1.2 client-initiated renegotiation', () => {
  let pki: TestPki;
  let gw: TestGateway;
  let echo: { port: number };
  let fixture: GatewayFixture;
  before(async () => {
    fixture = await startGatewayFixture(
      () => ({
        listeners: [{ name: 'egress', listen: '127.0.0.1:0', mode: 'connect' }],
        rules: [{ name: 'loopback', action: 'allow', to: { cidrs: ['127.0.0.0/8'] } }],
      }),
      { httpEchoes: [], tcpEchoes: 1 },
    );
    ({ pki, gw } = fixture);
    echo = { port: fixture.tcpEchoPort };
  });
  after(async () => {
    await fixture?.close();
  });

  it('is refused, on a connection that worked before the attempt', async () => {
    const client = await pki.workload('default', 'app');
    const socket = connect({
      host: '127.0.0.1',
      port: gw.port('egress'),
      ca: readFileSync(pki.rootPath),
      cert: readFileSync(client.certPath),
      key: readFileSync(client.keyPath),
      servername: 'localhost',
      maxVersion: 'TLSv1.2',
    });
    socket.on('error', () => {});
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('secureConnect', () => resolve());
        socket.once('error', reject);
      });
      assert.equal(socket.getProtocol(), 'TLSv1.2');
      // Positive control: a CONNECT tunnel through this very connection echoes.
      socket.write(`CONNECT 127.0.0.1:${echo.port} HTTP/1.1\r\nHost: 127.0.0.1:${echo.port}\r\n\r\n`);
      assert.match(await nextData(socket), /^HTTP\/1\.1 200/);
      socket.write('ping');
      assert.equal(await nextData(socket), 'ping');
      const outcome = await new Promise<string>((resolve) => {
        const timer = setTimeout(() => resolve('refused'), 3_000);
        const started = socket.renegotiate({ rejectUnauthorized: false }, (error) => {
          clearTimeout(timer);
          resolve(error ? 'refused' : 'renegotiated');
        });
        assert.equal(started, true, 'the client sent a renegotiation ClientHello');
        socket.write('drive'); // application data makes both sides process the handshake records
      });
      assert.equal(outcome, 'refused');
    } finally {
      socket.destroy();
    }
  });
});
