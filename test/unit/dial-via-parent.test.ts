import assert from 'node:assert/strict';
import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { isGatewayError } from '../../src/core/errors.ts';
import { dialViaParent, MAX_PARENT_ANSWER_BYTES } from '../../src/upstream/dial-via-parent.ts';

type Behaviour = (socket: Socket, request: string) => void;

/** A parent proxy on loopback whose answer to the CONNECT each test chooses. */
async function fakeParent(behaviour: Behaviour): Promise<{ server: Server; port: number; requests: string[] }> {
  const requests: string[] = [];
  const server = createServer((socket) => {
    socket.on('error', () => {});
    socket.once('data', (chunk) => {
      requests.push(chunk.toString('latin1'));
      behaviour(socket, chunk.toString('latin1'));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port, requests };
}

function dial(port: number, timeoutMs = 2_000) {
  return dialViaParent({
    parent: { host: '127.0.0.1', port, url: `http://127.0.0.1:${port}` },
    target: { host: 'api.example.com', port: 443 },
    localAddress: '127.0.0.2',
    timeoutMs,
    resolve: async () => assert.fail('an IP literal parent is not resolved'),
  });
}

describe('dialViaParent: the CONNECT to a parent proxy, bounded in size and time', () => {
  const servers: Server[] = [];
  let accepting: Awaited<ReturnType<typeof fakeParent>>;
  before(async () => {
    // Answers 200, then the destination's first bytes in the same segment.
    accepting = await fakeParent((socket) => {
      socket.write('HTTP/1.1 200 Connection established\r\nVia: 1.1 fake\r\n\r\nhello');
      socket.on('data', (data) => socket.write(data));
    });
    servers.push(accepting.server);
  });
  after(() => {
    for (const server of servers) server.close();
  });

  it('sends CONNECT host:port from the SNAT address and keeps bytes that follow the answer', async () => {
    const tunnel = await dial(accepting.port);
    assert.equal(tunnel.socket.localAddress, '127.0.0.2');
    assert.equal(accepting.requests[0], 'CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\n\r\n');
    // Handed over paused (pipe() resumes it), with the early bytes put back in front.
    assert.equal(tunnel.socket.isPaused(), true);
    const first = await new Promise<string>((resolve) =>
      tunnel.socket.once('data', (d) => resolve(d.toString())).resume(),
    );
    assert.equal(first, 'hello');
    assert.equal(tunnel.handshake.read, 'HTTP/1.1 200 Connection established\r\nVia: 1.1 fake\r\n\r\n'.length);
    tunnel.socket.destroy();
  });

  it('refuses an answer head over the size bound, and a non-2xx answer with its status', async () => {
    const control = await dial(accepting.port);
    control.socket.destroy();
    const endless = await fakeParent((socket) => {
      socket.write('HTTP/1.1 200 OK\r\n');
      socket.write(`X-Pad: ${'a'.repeat(MAX_PARENT_ANSWER_BYTES)}\r\n`);
    });
    const denying = await fakeParent((socket) => socket.end('HTTP/1.0 407 Proxy Authentication Required\r\n\r\n'));
    servers.push(endless.server, denying.server);
    await assert.rejects(dial(endless.port), (e) => isGatewayError(e, 'EGW_UPSTREAM_PARENT_REFUSED'));
    await assert.rejects(
      dial(denying.port),
      (e) => isGatewayError(e, 'EGW_UPSTREAM_PARENT_REFUSED') && e.details.receivedStatus === 407,
    );
  });

  it('gives up on a parent that never answers at the deadline, and on one that hangs up', async () => {
    const control = await dial(accepting.port, 300);
    control.socket.destroy();
    const silent = await fakeParent(() => {});
    const hangsUp = await fakeParent((socket) => socket.destroy());
    servers.push(silent.server, hangsUp.server);
    await assert.rejects(dial(silent.port, 300), (e) => isGatewayError(e, 'EGW_UPSTREAM_PARENT_UNREACHABLE'));
    await assert.rejects(dial(hangsUp.port), (e) => isGatewayError(e, 'EGW_UPSTREAM_PARENT_UNREACHABLE'));
  });
});
