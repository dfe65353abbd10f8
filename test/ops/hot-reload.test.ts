import assert from 'node:assert/strict';
import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect } from 'node:tls';
import { request } from 'undici';
import { parse, stringify } from 'yaml';
import { startGateway } from '../../src/main.ts';
import { exportPrivateKeyPem } from '../../src/pki/key-pair.ts';
import { curlViaGateway } from '../helpers/curl.ts';
import {
  type FixtureTargets,
  type GatewayFixture,
  startFixtureTargets,
  startGatewayFixture,
} from '../helpers/gateway-fixture.ts';
import { sClient } from '../helpers/openssl-client.ts';
import { pollDefined, pollUntil, waitUntil } from '../helpers/poll-until.ts';
import type { TestGateway } from '../helpers/test-gateway.ts';
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
  let echoPort: number;
  let fixture: GatewayFixture;

  before(async () => {
    fixture = await startGatewayFixture(
      () => ({
        listeners: [{ name: 'egress', listen: '127.0.0.1:0', mode: 'connect' }],
        rules: [
          { name: 'bookinfo', from: { namespaces: ['bookinfo'] }, to: { cidrs: ['127.0.0.0/8'] }, action: 'allow' },
        ],
        admin: { listen: '127.0.0.1:0', watch: true },
      }),
      { httpEchoes: [], tcpEchoes: 1 },
    );
    ({ pki: oldPki, gw, tcpEchoPort: echoPort } = fixture);
    newPki = await createTestPki();
  });
  after(async () => {
    await fixture?.close();
    newPki?.cleanup();
  });

  it('rotates the gateway certificate and the trust anchors while 50 tunnels carry data, cutting none', async () => {
    const oldClient = await oldPki.workload('bookinfo', 'productpage');
    const newClient = await newPki.workload('bookinfo', 'productpage');
    const oldFingerprint = await servedFingerprint(gw.port('egress'), oldClient, oldPki.rootPath);

    const tunnels: Tunnel[] = [];
    for (let i = 0; i < TUNNELS; i++)
      tunnels.push(await openTunnel(gw.port('egress'), oldClient, oldPki.rootPath, `127.0.0.1:${echoPort}`));
    const sent = tunnels.map(() => createHash('sha256'));
    const sendRound = (round: number) =>
      tunnels.forEach((tunnel, i) => {
        const chunk = Buffer.alloc(CHUNK_BYTES, (i * 31 + round) % 251);
        sent[i]?.update(chunk);
        tunnel.socket.write(chunk);
      });
    for (let round = 0; round < CHUNKS / 2; round++) sendRound(round);

    // Rotate: the gateway's own SVID now comes from another CA, in place, and the anchors are
    // the old and the new CA together (an anchor removed ends its tunnels: redecide.test.ts).
    const config = readFileSync(gw.configPath, 'utf8');
    const bothAnchors = join(newPki.dir, 'old-and-new.pem');
    writeFileSync(bothAnchors, `${oldPki.intermediate.certPem}\n${newPki.intermediate.certPem}`);
    writeFileSync(oldPki.gateway.certPath, readFileSync(newPki.gateway.certPath));
    writeFileSync(oldPki.gateway.keyPath, await exportPrivateKeyPem(newPki.gateway.leaf.keys.privateKey));
    writeFileSync(gw.configPath, config.replace(oldPki.intermediatePath, bothAnchors));
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
    await waitUntil(() => closedRecords().length >= TUNNELS, 5000, `${TUNNELS} egress-closed records`);
    assert.equal(closedRecords().length, TUNNELS);
    assert.ok(
      gw.records
        .filter((r) => r.action === 'egress-closed')
        .every((r) => r.bytesToClient === CHUNKS * CHUNK_BYTES && r.reason === 'closed'),
    );

    const newFingerprint = await servedFingerprint(gw.port('egress'), newClient, newPki.rootPath);
    assert.notEqual(newFingerprint, oldFingerprint, 'new clients see the new certificate');
    assert.equal(newFingerprint, new X509Certificate(newPki.gateway.leaf.certPem).fingerprint256);
    // Retire the old CA: only the new anchor stays.
    writeFileSync(gw.configPath, config.replace(oldPki.intermediatePath, newPki.intermediatePath));
    const retire = await request(`http://127.0.0.1:${gw.gateway.adminAddress?.port}/reload`, { method: 'POST' });
    assert.equal(retire.statusCode, 200, await retire.body.text());
    await assert.rejects(
      openTunnel(gw.port('egress'), oldClient, newPki.rootPath, `127.0.0.1:${echoPort}`),
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
      const tunnel = await openTunnel(gw.port('egress'), client, newPki.rootPath, `127.0.0.1:${echoPort}`);
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
    const url = `http://127.0.0.1:${echoPort}/`;
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
    await pollUntil(metrics, (n) => Number(n) > before, 10_000, 'egw_reloads_total{result="ok"} to grow', 100);
    assert.ok(Number(await metrics()) > before, 'the file watcher triggered a reload');
  });
});

interface EditableConfig {
  listeners: Array<Record<string, unknown>>;
  admin: Record<string, unknown>;
  audit?: unknown;
  limits?: unknown;
}

/** Rewrites the YAML config at `path` with `edit` applied to its parsed form. */
function editConfig(path: string, edit: (config: EditableConfig) => void): void {
  const config = parse(readFileSync(path, 'utf8')) as EditableConfig;
  edit(config);
  writeFileSync(path, stringify(config));
}

describe('reload: reloadable and restart-only settings', () => {
  let pki: TestPki;
  let echoPort: number;
  let targets: FixtureTargets;
  before(async () => {
    targets = await startFixtureTargets({ httpEchoes: [], tcpEchoes: 1 });
    ({ pki, tcpEchoPort: echoPort } = targets);
  });
  after(async () => {
    await targets?.close();
  });

  it('applies a reloaded listeners[].maxConnections to new connections, keeping the open ones', async () => {
    const gw = await targets.startGateway({
      listeners: [{ name: 'egress', listen: '127.0.0.1:0', mode: 'connect', maxConnections: 5 }],
      rules: [{ name: 'all', to: { cidrs: ['127.0.0.0/8'] }, action: 'allow' }],
      admin: { listen: '127.0.0.1:0', watch: false },
    });
    try {
      const client = await pki.workload('bookinfo', 'productpage');
      const held = await openTunnel(gw.port('egress'), client, pki.rootPath, `127.0.0.1:${echoPort}`);
      const second = await openTunnel(gw.port('egress'), client, pki.rootPath, `127.0.0.1:${echoPort}`);
      second.close(); // positive control: a second connection is accepted under the boot limit of 5
      editConfig(gw.configPath, (c) => {
        (c.listeners[0] as Record<string, unknown>).maxConnections = 1;
      });
      assert.deepEqual(await gw.gateway.reload(), { ok: true });
      const refused = await pollDefined(
        'a connection above the reloaded limit to be refused',
        async () => {
          // The closed second tunnel may still count for a moment; retry until the limit is what refuses.
          await sClient(gw.port('egress'), { client, caPath: pki.rootPath, waitForServerClose: true });
          return gw.records.find((r) => r.code === 'EGW_LIMIT_LISTENER_CONNECTIONS');
        },
        5_000,
        0,
      );
      assert.ok(refused, 'a connection above the reloaded limit is refused and audited');
      assert.match(refused.reason, /at its limit of 1 open connections/);
      held.socket.write('still');
      assert.equal((await held.waitFor(5)).toString(), 'still', 'the open tunnel was not cut');
      held.close();
    } finally {
      await gw.close();
    }
  });

  it('keeps admin and audit as started, reports them pending a restart in /config, and applies them at restart', async () => {
    const gw = await targets.startGateway({
      listeners: [{ name: 'egress', listen: '127.0.0.1:0', mode: 'connect' }],
      admin: { listen: '127.0.0.1:0', watch: false },
    });
    const admin = `http://127.0.0.1:${gw.gateway.adminAddress?.port}`;
    let restarted: Awaited<ReturnType<typeof startGateway>> | undefined;
    try {
      assert.equal((await request(`${admin}/readyz`)).statusCode, 200);
      const auditPath = join(dirname(gw.configPath), 'audit.log');
      editConfig(gw.configPath, (c) => {
        c.admin.certExpiryWindow = '48h'; // the test leaf expires in 24 h: unready under this window
        c.audit = { sinks: [{ type: 'file', path: auditPath }] };
        c.limits = { maxHeaderBytes: 4096 };
      });
      assert.deepEqual(await gw.gateway.reload(), { ok: true });
      const config = (await (await request(`${admin}/config`)).body.json()) as {
        limits: { maxHeaderBytes: number };
        admin: { certExpiryWindow: number };
        audit: { sinks: unknown[] };
        pendingRestart: string[];
      };
      assert.equal(config.limits.maxHeaderBytes, 4096, 'a reloadable section is in effect');
      assert.equal(config.admin.certExpiryWindow, 3_600_000, 'the running window, not the file one');
      assert.deepEqual(config.audit.sinks, []);
      assert.deepEqual(config.pendingRestart, ['admin.certExpiryWindow', 'audit.sinks']);
      const ready = await request(`${admin}/readyz`);
      assert.equal(ready.statusCode, 200, await ready.body.text());

      // At restart the file's window applies: the same file now makes the replica unready.
      restarted = await startGateway({
        configPath: gw.configPath,
        log: () => {},
        adminListen: '127.0.0.1:0',
        processMetrics: false,
      });
      const fresh = await request(`http://127.0.0.1:${restarted.adminAddress?.port}/readyz`);
      assert.equal(fresh.statusCode, 503);
      assert.match(await fresh.body.text(), /within admin\.certExpiryWindow/);
      assert.deepEqual(((await restarted.effectiveConfig()) as { pendingRestart: string[] }).pendingRestart, []);
    } finally {
      await restarted?.close(500);
      await gw.close();
    }
  });
});
