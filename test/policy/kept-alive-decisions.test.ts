import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Client } from 'undici';
import { parse, stringify } from 'yaml';
import type { AuditRecord } from '../../src/core/audit-event.ts';
import {
  type FixtureTargets,
  type GatewayFixture,
  startFixtureTargets,
  startGatewayFixture,
} from '../helpers/gateway-fixture.ts';
import { pollUntil } from '../helpers/poll-until.ts';
import type { TestGateway } from '../helpers/test-gateway.ts';
import { createTestPki, type TestPki } from '../helpers/test-pki.ts';
import { keptAliveClient } from '../helpers/tunnel-client.ts';

/** An origin that answers with the port its peer (the gateway's upstream connection) came from. */
async function startPortOrigin(): Promise<{ server: Server; port: number }> {
  const server = createServer((req, res) => {
    res.setHeader('content-type', 'text/plain');
    res.end(String(req.socket.remotePort));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port };
}

interface Answer {
  status: number;
  body: string;
  connection: string | undefined;
}

async function get(client: Client, url: string): Promise<Answer> {
  const response = await client.request({ path: url, method: 'GET' });
  const body = await response.body.text();
  const connection = response.headers.connection;
  return { status: response.statusCode, body, connection: typeof connection === 'string' ? connection : undefined };
}

function editConfig(path: string, edit: (config: Record<string, unknown>) => void): void {
  const config = parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  edit(config);
  writeFileSync(path, stringify(config));
}

const permitted = (records: AuditRecord[]) => records.filter((r) => r.action === 'egress-permitted');

describe('kept-alive absolute-form connections are decided on the current state', () => {
  let pki: TestPki;
  let other: TestPki;
  let origin: Awaited<ReturnType<typeof startPortOrigin>>;
  let targets: FixtureTargets;
  // The target is the suite's own origin (it answers with the upstream connection's port).
  before(async () => {
    targets = await startFixtureTargets({ httpEchoes: [] });
    ({ pki } = targets);
    other = await createTestPki();
    origin = await startPortOrigin();
  });
  after(async () => {
    origin?.server.close();
    await targets?.close();
    other?.cleanup();
  });

  const allowAll = [{ name: 'local', to: { cidrs: ['127.0.0.0/8'] }, action: 'allow' }];

  it('refuses the next request on the same connection once a reload denies the rule', async () => {
    const gw = await targets.startGateway({
      listeners: [{ name: 'egress', listen: '127.0.0.1:0', mode: 'connect' }],
      rules: allowAll,
      admin: { listen: '127.0.0.1:0', watch: false },
    });
    const client = keptAliveClient(gw.port('egress'), await pki.workload('bookinfo', 'productpage'), pki.rootPath);
    try {
      const url = `http://127.0.0.1:${origin.port}/`;
      assert.equal((await get(client, url)).status, 200, 'positive control: allowed before the reload');
      editConfig(gw.configPath, (c) => {
        c.rules = [{ name: 'local', to: { cidrs: ['127.0.0.0/8'] }, action: 'deny' }];
      });
      assert.deepEqual(await gw.gateway.reload(), { ok: true });
      const denied = await get(client, url);
      assert.equal(denied.status, 403);
      const refusal = await gw.waitForRecord((r) => r.action === 'egress-rejected' && r.code === 'EGW_POLICY_DENIED');
      assert.equal(refusal.connectionId, permitted(gw.records)[0]?.connectionId, 'on the same connection');
      assert.equal(refusal.reason, 'denied by rule local');
    } finally {
      await client.close();
      await gw.close();
    }
  });

  it('ends a kept-alive connection whose issuing anchor a reload removed', async () => {
    const anchors = join(pki.dir, 'two-cas.pem');
    writeFileSync(anchors, `${pki.intermediate.certPem}\n${other.intermediate.certPem}`);
    const gw = await targets.startGateway(
      {
        listeners: [{ name: 'egress', listen: '127.0.0.1:0', mode: 'connect' }],
        rules: allowAll,
        admin: { listen: '127.0.0.1:0', watch: false },
      },
      { anchors },
    );
    const client = keptAliveClient(gw.port('egress'), await pki.workload('bookinfo', 'reviews'), pki.rootPath);
    try {
      const url = `http://127.0.0.1:${origin.port}/`;
      assert.equal((await get(client, url)).status, 200, 'positive control: trusted before the reload');
      const connectionId = permitted(gw.records)[0]?.connectionId;
      writeFileSync(anchors, other.intermediate.certPem); // pki's CA is no longer an anchor
      assert.deepEqual(await gw.gateway.reload(), { ok: true });
      const ended = await gw.waitForRecord((r) => r.action === 'identity-rejected' && r.connectionId === connectionId);
      assert.equal(ended.code, 'EGW_IDENTITY_CHAIN_UNTRUSTED');
      assert.match(ended.reason, /^reload-denied: identity no longer trusted/);
      await assert.rejects(get(client, url), 'no further answer: the connection is gone, a new one is refused');
      assert.equal(permitted(gw.records).length, 1, 'no request was forwarded after the reload');
    } finally {
      await client.close().catch(() => {});
      await gw.close();
    }
  });

  it("ends a kept-alive connection at its leaf's notAfter", async () => {
    const gw = await targets.startGateway({
      listeners: [{ name: 'egress', listen: '127.0.0.1:0', mode: 'connect' }],
      rules: allowAll,
      admin: { listen: '127.0.0.1:0', watch: false },
    });
    const notAfter = new Date(Math.floor(Date.now() / 1000) * 1000 + 3000);
    const leaf = await pki.workload('bookinfo', 'ratings', { notBefore: new Date(Date.now() - 60_000), notAfter });
    const client = keptAliveClient(gw.port('egress'), leaf, pki.rootPath);
    try {
      const url = `http://127.0.0.1:${origin.port}/`;
      assert.equal((await get(client, url)).status, 200, 'positive control: valid before notAfter');
      const connectionId = permitted(gw.records)[0]?.connectionId;
      const ended = await gw.waitForRecord(
        (r) => r.action === 'identity-rejected' && r.connectionId === connectionId,
        10_000,
      );
      assert.equal(ended.code, 'EGW_IDENTITY_EXPIRED');
      assert.match(ended.reason, /^identity-expired: /);
      assert.ok(Date.parse(ended.timestamp) >= notAfter.getTime(), 'not before notAfter');
      await assert.rejects(get(client, url), 'the expired leaf gets no further answer');
      assert.equal(permitted(gw.records).length, 1);
    } finally {
      await client.close().catch(() => {});
      await gw.close();
    }
  });

  /** A gateway allowing everything with these connection caps, and one kept-alive client of it. */
  async function cappedGateway(caps: Record<string, unknown>) {
    const gw = await targets.startGateway({
      listeners: [{ name: 'egress', listen: '127.0.0.1:0', mode: 'connect' }],
      rules: allowAll,
      admin: { listen: '127.0.0.1:0', watch: false },
      ...caps,
    });
    return { gw, client: keptAliveClient(gw.port('egress'), await pki.workload('bookinfo', 'details'), pki.rootPath) };
  }

  it('closes a connection after limits.maxRequestsPerConnection', async () => {
    const { gw, client } = await cappedGateway({ limits: { maxRequestsPerConnection: 2 } });
    try {
      const url = `http://127.0.0.1:${origin.port}/`;
      const first = await get(client, url);
      assert.equal(first.status, 200);
      assert.notEqual(first.connection, 'close', 'positive control: the first request keeps the connection');
      const second = await get(client, url);
      assert.equal(second.connection, 'close', 'the second of 2 requests closes');
      const third = await get(client, url);
      assert.equal(third.status, 200);
      assert.notEqual(third.connection, 'close');
      const ids = permitted(gw.records).map((r) => r.connectionId);
      assert.equal(ids[0], ids[1]);
      assert.notEqual(ids[2], ids[1], 'the third request came on a new connection');
    } finally {
      await client.close();
      await gw.close();
    }
  });

  it('closes a connection after timeouts.connectionMaxAge', async () => {
    // No request cap: only the age can close this connection.
    const { gw, client } = await cappedGateway({
      limits: { maxRequestsPerConnection: 0 },
      timeouts: { connectionMaxAge: '1500ms' },
    });
    try {
      const url = `http://127.0.0.1:${origin.port}/`;
      const first = await get(client, url);
      const second = await get(client, url);
      assert.equal(first.status, 200);
      assert.notEqual(second.connection, 'close', 'positive control: a young connection is kept');
      const aged = await pollUntil(
        () => get(client, url),
        (answer) => answer.connection === 'close',
        5_000,
        'an answer that closes the aged connection',
        250,
      );
      assert.equal(aged?.connection, 'close', 'a connection older than connectionMaxAge is closed');
      const ids = permitted(gw.records).map((r) => r.connectionId);
      assert.ok(ids.length >= 3);
      assert.equal(new Set(ids).size, 1, 'every request up to the close came on the one aged connection');
      const after = await get(client, url);
      assert.equal(after.status, 200);
      assert.notEqual(permitted(gw.records).at(-1)?.connectionId, ids[0], 'the next request came on a new connection');
    } finally {
      await client.close();
      await gw.close();
    }
  });
});

describe('upstream connections are never shared across identities', () => {
  let pki: TestPki;
  let origin: Awaited<ReturnType<typeof startPortOrigin>>;
  let gw: TestGateway;
  let fixture: GatewayFixture;
  before(async () => {
    origin = await startPortOrigin();
    fixture = await startGatewayFixture(
      () => ({
        listeners: [{ name: 'egress', listen: '127.0.0.1:0', mode: 'connect' }],
        rules: [{ name: 'local', to: { cidrs: ['127.0.0.0/8'] }, action: 'allow' }],
        admin: { listen: '127.0.0.1:0', watch: false },
      }),
      { httpEchoes: [] },
    );
    ({ pki, gw } = fixture);
  });
  after(async () => {
    await fixture?.close();
    origin?.server.close();
  });

  it('pools per SPIFFE ID: the same identity reuses its connection, another gets its own', async () => {
    const alice = keptAliveClient(gw.port('egress'), await pki.workload('team-a', 'alice'), pki.rootPath);
    const bob = keptAliveClient(gw.port('egress'), await pki.workload('team-b', 'bob'), pki.rootPath);
    try {
      const url = `http://127.0.0.1:${origin.port}/`;
      const a1 = (await get(alice, url)).body;
      const a2 = (await get(alice, url)).body;
      const b1 = (await get(bob, url)).body;
      const a3 = (await get(alice, url)).body;
      assert.equal(a2, a1, 'positive control: the same identity reuses its pooled upstream connection');
      assert.equal(a3, a1);
      assert.notEqual(b1, a1, "another identity's request reaches the origin on another connection");
      const records = permitted(gw.records);
      assert.equal(records.length, 4);
      assert.deepEqual(
        records.map((r) => String(r.snat?.port)),
        [a1, a2, b1, a3],
        'each absolute-form record carries the SNAT port the origin saw',
      );
      assert.ok(records.every((r) => r.snat?.ip === '127.0.0.1'));
    } finally {
      await alice.close();
      await bob.close();
    }
  });
});
