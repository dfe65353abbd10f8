import assert from 'node:assert/strict';
import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { connect } from 'node:tls';
import { request } from 'undici';
import { exportPrivateKeyPem } from '../../src/pki/key-pair.ts';
import { curlViaGateway } from '../helpers/curl.ts';
import { startTcpEchoServer } from '../helpers/tcp-echo-server.ts';
import { startTestGateway, type TestGateway } from '../helpers/test-gateway.ts';
import { createTestPki, type TestPki, type WrittenLeaf } from '../helpers/test-pki.ts';
import { openTunnel, type Tunnel } from '../helpers/tunnel-client.ts';

const TUNNELS = 50;
const CHUNKS = 20;
const CHUNK_BYTES = 4096;

/** The fingerprint of the certificate a new client sees from the gateway. */
async function servedFingerprint(port: number, client: WrittenLeaf, caPath: string): Promise<string> {
  const socket = connect({
    host: '127.0.0.1',
    port,
    ca: readFileSync(caPath),
    cert: readFileSync(client.certPath),
    key: readFileSync(client.keyPath),
    servername: 'localhost',
  });
  try {
    await new Promise((resolve, reject) => {
      socket.once('secureConnect', resolve);
      socket.once('error', reject);
    });
    return socket.getPeerCertificate().fingerprint256;
  } finally {
    socket.destroy();
  }
}

describe('hot reload', () => {
  let oldPki: TestPki;
  let newPki: TestPki;
  let gw: TestGateway;
  let echo: Awaited<ReturnType<typeof startTcpEchoServer>>;

  before(async () => {
    oldPki = await createTestPki();
    newPki = await createTestPki();
    echo = await startTcpEchoServer();
    gw = await startTestGateway(oldPki, {
      listeners: [{ name: 'egress', listen: '127.0.0.1:0', mode: 'connect' }],
      rules: [
        { name: 'bookinfo', from: { namespaces: ['bookinfo'] }, to: { cidrs: ['127.0.0.0/8'] }, action: 'allow' },
      ],
      admin: { listen: '127.0.0.1:0', watch: true },
    });
  });
  after(async () => {
    await gw.close();
    echo.close();
    oldPki.cleanup();
    newPki.cleanup();
  });

  it('rotates the gateway certificate and the trust anchors while 50 tunnels carry data, cutting none', async () => {
    const oldClient = await oldPki.workload('bookinfo', 'productpage');
    const newClient = await newPki.workload('bookinfo', 'productpage');
    const oldFingerprint = await servedFingerprint(gw.port('egress'), oldClient, oldPki.rootPath);

    const tunnels: Tunnel[] = [];
    for (let i = 0; i < TUNNELS; i++)
      tunnels.push(await openTunnel(gw.port('egress'), oldClient, oldPki.rootPath, `127.0.0.1:${echo.port}`));
    const sent = tunnels.map(() => createHash('sha256'));
    const sendRound = (round: number) =>
      tunnels.forEach((tunnel, i) => {
        const chunk = Buffer.alloc(CHUNK_BYTES, (i * 31 + round) % 251);
        sent[i]?.update(chunk);
        tunnel.socket.write(chunk);
      });
    for (let round = 0; round < CHUNKS / 2; round++) sendRound(round);

    // Rotate: the gateway's own SVID and the anchors now come from another CA, in place.
    const config = readFileSync(gw.configPath, 'utf8');
    writeFileSync(oldPki.gateway.certPath, readFileSync(newPki.gateway.certPath));
    writeFileSync(oldPki.gateway.keyPath, await exportPrivateKeyPem(newPki.gateway.leaf.keys.privateKey));
    writeFileSync(gw.configPath, config.replace(oldPki.intermediatePath, newPki.intermediatePath));
    const reload = await request(`http://127.0.0.1:${gw.gateway.adminAddress?.port}/reload`, { method: 'POST' });
    assert.equal(reload.statusCode, 200, await reload.body.text());

    for (let round = CHUNKS / 2; round < CHUNKS; round++) sendRound(round);
    const received = await Promise.all(tunnels.map((tunnel) => tunnel.waitFor(CHUNKS * CHUNK_BYTES, 15_000)));
    received.forEach((bytes, i) => {
      assert.equal(
        createHash('sha256').update(bytes).digest('hex'),
        sent[i]?.digest('hex'),
        `tunnel ${i} echoed every byte intact`,
      );
    });
    for (const tunnel of tunnels) tunnel.close();
    const closedRecords = () => gw.records.filter((r) => r.action === 'egress-closed');
    const deadline = Date.now() + 5000;
    while (closedRecords().length < TUNNELS && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.equal(closedRecords().length, TUNNELS);
    assert.ok(
      gw.records
        .filter((r) => r.action === 'egress-closed')
        .every((r) => r.bytesToClient === CHUNKS * CHUNK_BYTES && r.reason === 'closed'),
    );

    const newFingerprint = await servedFingerprint(gw.port('egress'), newClient, newPki.rootPath);
    assert.notEqual(newFingerprint, oldFingerprint, 'new clients see the new certificate');
    assert.equal(newFingerprint, new X509Certificate(newPki.gateway.leaf.certPem).fingerprint256);
    await assert.rejects(
      openTunnel(gw.port('egress'), oldClient, newPki.rootPath, `127.0.0.1:${echo.port}`),
      'a workload of the retired CA is refused',
    );
  });

  it('keeps the running state when the changed file is broken', async () => {
    const client = await newPki.workload('bookinfo', 'reviews');
    const before = readFileSync(gw.configPath, 'utf8');
    writeFileSync(gw.configPath, 'listeners: [oops');
    try {
      const reload = await request(`http://127.0.0.1:${gw.gateway.adminAddress?.port}/reload`, { method: 'POST' });
      assert.equal(reload.statusCode, 422);
      await reload.body.dump();
      const tunnel = await openTunnel(gw.port('egress'), client, newPki.rootPath, `127.0.0.1:${echo.port}`);
      tunnel.socket.write('ping');
      assert.equal((await tunnel.waitFor(4)).toString(), 'ping');
      tunnel.close();
    } finally {
      writeFileSync(gw.configPath, before);
    }
  });

  it('applies a reloaded header limit to new connections', async () => {
    const client = await newPki.workload('bookinfo', 'details');
    const big = `X-Big: ${'a'.repeat(6000)}`;
    const url = `http://127.0.0.1:${echo.port}/`;
    const before = await curlViaGateway(gw.port('egress'), client, newPki.rootPath, url, [
      '-p',
      '-v',
      '--max-time',
      '3',
      '--proxy-header',
      big,
    ]);
    assert.doesNotMatch(before.stderr, /< HTTP\/1\.1 431/);
    const config = readFileSync(gw.configPath, 'utf8');
    writeFileSync(gw.configPath, `${config}\nlimits: { maxHeaderBytes: 4096 }\n`);
    try {
      const reload = await request(`http://127.0.0.1:${gw.gateway.adminAddress?.port}/reload`, { method: 'POST' });
      assert.equal(reload.statusCode, 200, await reload.body.text());
      const after = await curlViaGateway(gw.port('egress'), client, newPki.rootPath, url, [
        '-p',
        '-v',
        '--proxy-header',
        big,
      ]);
      assert.match(after.stderr, /< HTTP\/1\.1 431/);
    } finally {
      writeFileSync(gw.configPath, config);
    }
  });

  it('reloads by itself when a watched file changes', async () => {
    const metrics = async () =>
      (await (await request(`http://127.0.0.1:${gw.gateway.adminAddress?.port}/metrics`)).body.text()).match(
        /^egw_reloads_total\{result="ok"\} (\d+)$/m,
      )?.[1];
    const before = Number(await metrics());
    writeFileSync(gw.configPath, `${readFileSync(gw.configPath, 'utf8')}\n# touched\n`);
    const deadline = Date.now() + 10_000;
    while (Number(await metrics()) <= before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    assert.ok(Number(await metrics()) > before, 'the file watcher triggered a reload');
  });
});
