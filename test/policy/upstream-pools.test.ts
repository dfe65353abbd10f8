import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { HttpForwarder } from '../../src/upstream/http-forwarder.ts';

describe('HttpForwarder pools', () => {
  let server: Server;
  let port: number;
  before(async () => {
    server = createServer((req, res) => res.end(String(req.socket.remotePort)));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  after(() => server.close());

  const forward = async (forwarder: HttpForwarder, identity: string) => {
    const response = await forwarder.forward({
      identity,
      connectTimeoutMs: 2000,
      ip: '127.0.0.1',
      port,
      hostHeader: `127.0.0.1:${port}`,
      method: 'GET',
      path: '/',
      headers: {},
    });
    const seen = await new Promise<string>((resolve, reject) => {
      let text = '';
      response.body.on('data', (chunk: Buffer) => {
        text += chunk.toString();
      });
      response.body.once('end', () => resolve(text));
      response.body.once('error', reject);
    });
    return { seen, localPort: response.localPort };
  };

  it('keeps at most maxPools pools, one per identity, the least recently used evicted first', async () => {
    const forwarder = new HttpForwarder({ responseTimeoutMs: 5000, maxPools: () => 2 });
    try {
      const a = await forward(forwarder, 'spiffe://td/a');
      assert.equal(String(a.localPort), a.seen, 'the reported local port is the one the origin saw');
      await forward(forwarder, 'spiffe://td/b');
      assert.equal(forwarder.pools, 2, 'positive control: two identities, two pools');
      const again = await forward(forwarder, 'spiffe://td/a'); // a is now the most recently used
      assert.equal(again.seen, a.seen, 'a reuses its own pooled connection');
      await forward(forwarder, 'spiffe://td/c');
      assert.equal(forwarder.pools, 2, 'a third identity evicts one pool instead of growing');
      const stillPooled = await forward(forwarder, 'spiffe://td/a');
      assert.equal(stillPooled.seen, a.seen, 'the evicted pool was b, the least recently used');
    } finally {
      await forwarder.close();
    }
  });
});
