import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';
import { PassThrough, type Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { relayInto, relayStats } from '../../src/pipe/relay-into.ts';
import { startTestGateway, type TestGateway } from '../helpers/test-gateway.ts';
import { createTestPki, type TestPki, type WrittenLeaf } from '../helpers/test-pki.ts';
import { openTlsClient } from '../helpers/tunnel-client.ts';

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');
const MiB = 1024 * 1024;

/** How each end behaves: how long it leaves its reads stalled, and how it writes. */
interface Pace {
  readonly mib: number;
  readonly upstreamStallMs: number;
  readonly clientStallMs: number;
  /** 0: writes of random sizes up to 200 kB; n: n-byte writes, each once the last one was sent. */
  readonly clientWriteBytes: number;
  readonly upstreamWriteBytes: number;
}

/**
 * Random-sized writes so TLS records and TCP reads do not line up with the gateway's buffers; or
 * small writes one at a time, so the gateway reads small chunks behind a write still queued.
 */
async function send(stream: Writable, data: Buffer, writeBytes: number): Promise<void> {
  for (let at = 0; at < data.length; ) {
    const size = writeBytes || 1 + Math.floor(Math.random() * 200_000);
    const piece = data.subarray(at, at + size);
    at += size;
    if (writeBytes) await new Promise((r) => stream.write(piece, () => setImmediate(r)));
    else if (!stream.write(piece)) await new Promise((r) => stream.once('drain', r));
  }
  stream.end();
}

/** Collects what `stream` reads until its end, starting after `stallMs`. */
function receive(stream: Socket, stallMs: number): Promise<Buffer> {
  stream.pause();
  setTimeout(() => stream.resume(), stallMs);
  const chunks: Buffer[] = [];
  return new Promise((resolve) => {
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.once('end', () => resolve(Buffer.concat(chunks)));
    stream.once('close', () => resolve(Buffer.concat(chunks)));
  });
}

function receiveAll(stream: PassThrough): Promise<Buffer> {
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  return new Promise((resolve) => stream.once('end', () => resolve(Buffer.concat(chunks))));
}

/** Reads all the client sends; once the client has half-closed, answers with `download` and closes. */
function startUpstream(pace: () => { pace: Pace; download: Buffer }) {
  const received: Promise<Buffer>[] = [];
  const server = createServer({ allowHalfOpen: true }, (socket: Socket) => {
    socket.on('error', () => {});
    const { pace: p, download } = pace();
    const got = receive(socket, p.upstreamStallMs);
    received.push(got);
    got.then(() => send(socket, download, p.upstreamWriteBytes));
  });
  return new Promise<{ server: Server; received: Promise<Buffer>[] }>((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve({ server, received })),
  );
}

describe('tcp mode relays through reused read buffers (issue 8 item 4)', () => {
  let pki: TestPki;
  let gw: TestGateway;
  let client: WrittenLeaf;
  let upstream: Awaited<ReturnType<typeof startUpstream>>;
  let current: { pace: Pace; download: Buffer };

  before(async () => {
    pki = await createTestPki();
    client = await pki.workload('bookinfo', 'productpage');
    upstream = await startUpstream(() => current);
    const port = (upstream.server.address() as AddressInfo).port;
    gw = await startTestGateway(pki, {
      listeners: [{ name: 'bulk', listen: '127.0.0.1:0', mode: 'tcp', upstream: `127.0.0.1:${port}` }],
      rules: [{ name: 'bookinfo', from: { namespaces: ['bookinfo'] }, action: 'allow' }],
    });
  });
  after(async () => {
    await gw?.close();
    upstream?.server.close();
    pki?.cleanup();
  });

  const cases: Array<[string, Pace]> = [
    [
      'both ends reading at once',
      { mib: 12, upstreamStallMs: 0, clientStallMs: 0, clientWriteBytes: 0, upstreamWriteBytes: 0 },
    ],
    [
      'each end stalled in turn, so the kernel takes only part of a write',
      { mib: 12, upstreamStallMs: 400, clientStallMs: 400, clientWriteBytes: 0, upstreamWriteBytes: 0 },
    ],
    [
      'small writes towards a stalled end, so chunks arrive behind a queued write',
      { mib: 6, upstreamStallMs: 1000, clientStallMs: 3000, clientWriteBytes: 1024, upstreamWriteBytes: 1024 },
    ],
  ];
  for (const [name, pace] of cases) {
    it(`carries ${pace.mib} MiB each way byte for byte: ${name}`, { timeout: 60_000 }, async () => {
      const upload = randomBytes(pace.mib * MiB);
      current = { pace, download: randomBytes(pace.mib * MiB) };
      const reusedBefore = relayStats.reusedBuffers;
      const socket = await openTlsClient(gw.port('bulk'), client, pki.rootPath);
      const answer = receive(socket, pace.clientStallMs);
      await send(socket, upload, pace.clientWriteBytes);
      const got = await (upstream.received.at(-1) as Promise<Buffer>);
      assert.equal(got.length, upload.length);
      assert.equal(sha256(got), sha256(upload), 'upload arrived intact');
      const downloaded = await answer;
      assert.equal(downloaded.length, current.download.length);
      assert.equal(sha256(downloaded), sha256(current.download), 'download arrived intact');
      // Both directions of this tunnel read into reused buffers (not the pipe() fallback).
      assert.equal(relayStats.reusedBuffers - reusedBefore, 2);
      const closed = await gw.waitForRecord((r) => r.action === 'egress-closed' && r.bytesFromClient === upload.length);
      assert.equal(closed.bytesToClient, current.download.length);
      socket.destroy();
    });
  }

  it('falls back to pipe() for a stream without Node socket read slots, with the same bytes and end', async () => {
    const [from, to] = [new PassThrough(), new PassThrough()];
    const pipedBefore = relayStats.piped;
    relayInto(from, to);
    const out = receiveAll(to);
    from.end('no socket here');
    assert.equal((await out).toString(), 'no socket here');
    assert.equal(relayStats.piped - pipedBefore, 1);
  });
});
