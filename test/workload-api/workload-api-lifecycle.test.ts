import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Gateway, startGateway } from '../../src/main.ts';
import { pollDefined } from '../helpers/poll-until.ts';
import { writeTestConfig } from '../helpers/test-gateway.ts';
import { createTestPki, type TestPki } from '../helpers/test-pki.ts';
import { type FakeWorkloadApi, startFakeWorkloadApi, svidMessage } from './helpers/fake-workload-api.ts';

// The Gateway's life around the Workload API: the admin API before the first SVID, the reload
// that binds the listeners, and the shutdown that closes the agent's streams.

const GATEWAY_ID = 'spiffe://cluster.local/ns/bookinfo/sa/bigip-proxy';

describe('a Workload API gateway before, at and after the first SVID', () => {
  let pki: TestPki;
  let agent: FakeWorkloadApi;
  let gateway: Gateway | undefined;
  let configPath: string;
  const logs: string[] = [];
  const admin = (path: string, init?: RequestInit) =>
    fetch(`http://127.0.0.1:${gateway?.adminAddress?.port}${path}`, init).then(async (r) => ({
      status: r.status,
      body: (await r.json()) as Record<string, unknown>,
    }));

  before(async () => {
    pki = await createTestPki();
    agent = await startFakeWorkloadApi();
    configPath = writeTestConfig(pki, {
      identity: { trustDomain: 'cluster.local', workloadApi: { socket: agent.socket } },
      listeners: [{ name: 'egress', listen: '127.0.0.1:0', mode: 'tcp', upstream: '127.0.0.1:9' }],
      rules: [],
      admin: { listen: 'off', watch: false },
    });
    gateway = await startGateway({ configPath, log: (m) => logs.push(m), adminListen: '127.0.0.1:0' });
  });
  after(async () => {
    await gateway?.close(500);
    await agent.cleanup();
    rmSync(dirname(configPath), { recursive: true, force: true });
    pki.cleanup();
  });

  it('answers /config, /metrics and /stats while waiting; a reload and a policy check fail with the reason', async () => {
    await pollDefined('both streams', () => (agent.calls.accepted >= 2 ? true : undefined));
    const config = await admin('/config');
    assert.equal(config.status, 200);
    assert.deepEqual(config.body.pendingRestart, []);
    assert.deepEqual((config.body.identity as Record<string, unknown>).workloadApi, { socket: agent.socket });
    const metrics = await fetch(`http://127.0.0.1:${gateway?.adminAddress?.port}/metrics`);
    assert.equal(metrics.status, 200);
    assert.match(await metrics.text(), /egw_active_tunnels\{listener="egress"\} 0/);
    assert.equal((await admin('/stats')).status, 200);
    const reload = await admin('/reload', { method: 'POST' });
    assert.equal(reload.status, 422);
    assert.match(String(reload.body.error), /identity\.workloadApi: no SVID from the agent yet/);
    const check = await admin('/policy/check', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ listener: 'egress', spiffeId: 'spiffe://cluster.local/ns/a/sa/b' }),
    });
    assert.equal(check.status, 400);
    assert.equal(check.body.error, 'EGW_WORKLOAD_API_UNAVAILABLE');
    assert.equal(gateway?.addresses.size, 0);
    assert.equal((await admin('/readyz')).status, 503);
  });

  it('binds the listeners on the first SVID, and a later reload keeps them', async () => {
    agent.pushSvid({ svids: [svidMessage(pki.gateway, [pki.intermediate])] });
    await pollDefined('the listener', () => (gateway?.addresses.get('egress') ? true : undefined));
    const port = gateway?.addresses.get('egress')?.port;
    assert.ok(port && port > 0);
    await pollDefined('readiness', async () => ((await admin('/readyz')).status === 200 ? true : undefined));
    assert.deepEqual(await gateway?.reload(), { ok: true });
    assert.equal(gateway?.addresses.get('egress')?.port, port);
    assert.equal(logs.filter((l) => l.startsWith('listener egress (tcp)')).length, 1);
  });

  it('applies an SVID rotation while the config file is broken, without re-reading it', async () => {
    const good = readFileSync(configPath, 'utf8');
    writeFileSync(configPath, 'identity: [not, a, mapping');
    const broken = await gateway?.reload();
    assert.equal(broken?.ok, false);
    const rotated = await pki.issue('gateway-rotated', { spiffeIds: [GATEWAY_ID], ipAddresses: ['127.0.0.1'] });
    const serial = new X509Certificate(rotated.leaf.certPem).serialNumber.toUpperCase();
    assert.notEqual(gateway?.state().serverCertificate.serialNumber, serial);
    agent.pushSvid({ svids: [svidMessage(rotated, [pki.intermediate])] });
    await pollDefined('the rotated SVID', () =>
      gateway?.state().serverCertificate.serialNumber === serial ? true : undefined,
    );
    assert.ok(logs.some((l) => l.startsWith(`reloaded the identity from Workload API ${agent.socket}`)));
    writeFileSync(configPath, good);
  });

  it('closes the agent streams on shutdown', async () => {
    assert.equal(agent.openSvidStreams(), 1);
    await gateway?.close(500);
    await pollDefined('the streams to close', () => (agent.openSvidStreams() === 0 ? true : undefined));
    assert.equal(gateway?.snapshot().state.listeners.size, 1);
  });
});
