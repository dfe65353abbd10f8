import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { isGatewayError } from '../../src/core/errors.ts';
import { type RuntimeEvent, subscribeRuntimeEvents } from '../../src/core/runtime-event.ts';
import { dialFromSnatPool } from '../../src/upstream/dial-snat-pool.ts';

// 203.0.113.77 (TEST-NET-3) is on no interface here, so binding it fails with EADDRNOTAVAIL
// before anything is sent: an address "removed from the host", without a namespace.
const GONE = '203.0.113.77';

describe('dialFromSnatPool (real sockets on loopback)', () => {
  let server: Server;
  let port: number;
  const events: RuntimeEvent[] = [];
  let unsubscribe: () => void;

  before(async () => {
    server = createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as { port: number }).port;
    unsubscribe = subscribeRuntimeEvents((event) => events.push(event));
  });
  after(() => {
    unsubscribe();
    server.close();
  });

  const dial = (localAddress: string, fallbacks: string[], ip = '127.0.0.1', to = port) =>
    dialFromSnatPool({ ip, port: to, timeoutMs: 2000, listener: 'egress', localAddress, fallbacks });

  it('dials from the chosen address when it works, without a failover', async () => {
    const socket = await dial('127.0.0.2', ['127.0.0.5']);
    assert.equal(socket.localAddress, '127.0.0.2');
    socket.destroy();
    assert.deepEqual(events, []);
  });

  it('fails over from an address that is not on the host, and counts it', async () => {
    const socket = await dial(GONE, ['127.0.0.5']);
    assert.equal(socket.localAddress, '127.0.0.5');
    socket.destroy();
    assert.deepEqual(events, [{ type: 'snat-failover', listener: 'egress', address: GONE }]);
  });

  it('does not retry a refusal by the destination from another address, and reports the last exhaustion', async () => {
    events.length = 0;
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const closedPort = (closed.address() as { port: number }).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    await assert.rejects(dial('127.0.0.2', ['127.0.0.5'], '127.0.0.1', closedPort), (e) =>
      isGatewayError(e, 'EGW_UPSTREAM_REFUSED'),
    );
    assert.deepEqual(events, [], 'a refused destination is not a SNAT failure');
    await assert.rejects(dial(GONE, [GONE]), (e) => isGatewayError(e, 'EGW_UPSTREAM_UNREACHABLE'));
    assert.equal(events.length, 1, 'the last address has no next one to fail over to');
  });
});
