import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { type AddressInfo, createServer, type Server } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { acceptTls } from '../../src/tls/accept-tls.ts';
import { createServerTlsContext } from '../../src/tls/server-tls-context.ts';
import { TicketKeyRing } from '../../src/tls/ticket-keys.ts';
import { createTestPki, type TestPki, type WrittenLeaf } from '../helpers/test-pki.ts';
import { connectOnce } from './resumption-client.ts';

const HOUR = 3_600_000;

describe('session ticket keys', () => {
  let pki: TestPki;
  let client: WrittenLeaf;
  const servers: Server[] = [];

  before(async () => {
    pki = await createTestPki();
    client = await pki.workload('bookinfo', 'productpage');
  });
  after(() => {
    for (const server of servers) server.close();
    pki.cleanup();
  });

  /** A real TLS server on loopback (the gateway's own context and handshake) with this key ring. */
  async function serve(ring: TicketKeyRing): Promise<number> {
    const context = createServerTlsContext(
      {
        certPem: readFileSync(pki.gateway.certPath, 'utf8'),
        keyPem: readFileSync(pki.gateway.keyPath, 'utf8'),
        anchorsPem: pki.intermediate.certPem,
      },
      ring,
    );
    const server = createServer((raw) => {
      raw.on('error', () => {});
      acceptTls(raw, context, 5000).catch(() => {});
    });
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return (server.address() as AddressInfo).port;
  }

  it('rotate: a ticket of the previous key is accepted (and renewed), an older one is not', async () => {
    let now = 10 * HOUR + 1000;
    const port = await serve(new TicketKeyRing({ rotationMs: HOUR, now: () => now }));
    const first = await connectOnce(port, client, pki.rootPath);
    assert.equal(first.reused, false);
    assert.ok(first.session);
    const same = await connectOnce(port, client, pki.rootPath, { session: first.session, untilHandshake: true });
    assert.equal(same.reused, true, 'positive control: resumes under the key that sealed it');

    now += HOUR; // the sealing key is now the previous one
    const renewed = await connectOnce(port, client, pki.rootPath, { session: first.session });
    assert.equal(renewed.reused, true, 'the previous key is still accepted within the window');
    assert.ok(renewed.session, 'and the session is renewed under the current key');

    now += HOUR; // two rotations later: the first key is gone, the renewed ticket's key is previous
    const old = await connectOnce(port, client, pki.rootPath, { session: first.session });
    assert.equal(old.reused, false, 'a ticket older than the window gets a full handshake');
    const fromRenewed = await connectOnce(port, client, pki.rootPath, {
      session: renewed.session,
      untilHandshake: true,
    });
    assert.equal(fromRenewed.reused, true, 'the renewed ticket still resumes');
  });

  it("processes sharing a secret resume each other's tickets; another secret does not", async () => {
    const secret = Buffer.alloc(32, 7);
    const a = await serve(new TicketKeyRing({ secret }));
    const b = await serve(new TicketKeyRing({ secret }));
    const c = await serve(new TicketKeyRing({ secret: Buffer.alloc(32, 8) }));
    const first = await connectOnce(a, client, pki.rootPath);
    assert.ok(first.session);
    assert.equal(
      (await connectOnce(b, client, pki.rootPath, { session: first.session, untilHandshake: true })).reused,
      true,
    );
    assert.equal((await connectOnce(c, client, pki.rootPath, { session: first.session })).reused, false);
  });
});
