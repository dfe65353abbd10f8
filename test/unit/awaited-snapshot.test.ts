import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { type LoadedConfig, parseConfig } from '../../src/config/load-config.ts';
import { isGatewayError } from '../../src/core/errors.ts';
import { reloadSnapshot } from '../../src/gateway/gateway-snapshot.ts';
import { readinessOf } from '../../src/gateway/readiness.ts';
import { identitySourceChange } from '../../src/gateway/restart-only.ts';
import { SnapshotStore } from '../../src/gateway/snapshot-store.ts';
import type { IdentityMaterial } from '../../src/sources/identity-material.ts';
import { createTestPki, type TestPki } from '../helpers/test-pki.ts';

// A gateway whose identity comes from the Workload API starts without a snapshot (no SVID yet).

const socket = 'unix:///run/spire/sockets/agent.sock';
const listeners = [{ name: 'egress', listen: '127.0.0.1:0', mode: 'connect' }];

function loaded(identity: Record<string, unknown>, extra: Record<string, unknown> = {}): LoadedConfig {
  const text = stringify({ identity: { trustDomain: 'cluster.local', ...identity }, listeners, ...extra });
  return { path: 'gw.yaml', config: parseConfig(text, 'gw.yaml') };
}

describe('readiness before the first state', () => {
  const facts = { draining: false, listenersBound: true, certificates: [], crls: [], expiryWindowMs: 0, nowMs: 0 };

  it('names what it waits for instead of the unbound listeners, and draining before both', () => {
    assert.deepEqual(readinessOf(facts), { ready: true, reasons: [] });
    const waiting = { ...facts, listenersBound: false, waitingFor: 'waiting for the first X.509-SVID from X' };
    assert.deepEqual(readinessOf(waiting), { ready: false, reasons: ['waiting for the first X.509-SVID from X'] });
    assert.deepEqual(readinessOf({ ...waiting, draining: true }).reasons, ['draining']);
  });
});

describe('identity source change on reload', () => {
  it('is none for the same socket, and a restart for adding, removing or re-pointing it', () => {
    const api = loaded({ workloadApi: { socket } }).config;
    const files = loaded({ cert: 'gw.pem', key: 'gw.key', trustAnchors: 'ca.pem' }).config;
    assert.equal(identitySourceChange(api, loaded({ workloadApi: { socket } }).config), undefined);
    assert.equal(identitySourceChange(files, files), undefined);
    assert.match(identitySourceChange(files, api) ?? '', /identity\.workloadApi .*restart the gateway/);
    assert.match(identitySourceChange(api, files) ?? '', /restart the gateway/);
    const other = loaded({ workloadApi: { socket: 'unix:///tmp/other.sock' } }).config;
    assert.match(identitySourceChange(api, other) ?? '', /restart the gateway/);
  });
});

describe('a store started without a snapshot', () => {
  let pki: TestPki;
  let material: IdentityMaterial;
  before(async () => {
    pki = await createTestPki();
    material = {
      certPem: readFileSync(pki.gateway.certPath, 'utf8'),
      keyPem: readFileSync(pki.gateway.keyPath, 'utf8'),
      anchorsPem: pki.intermediate.certPem,
      source: `Workload API ${socket}`,
      federatedBundles: new Map(),
    };
  });
  after(() => pki.cleanup());

  it('answers config and the reason while waiting, refuses a state, then holds the first snapshot', async () => {
    const boot = loaded({ workloadApi: { socket } });
    const store = new SnapshotStore({ config: boot.config, waitingFor: 'waiting for the first X.509-SVID' });
    assert.equal(store.config, boot.config);
    assert.equal(store.waitingFor, 'waiting for the first X.509-SVID');
    assert.equal(store.latest, undefined);
    assert.throws(
      () => store.current,
      (e) => isGatewayError(e, 'EGW_WORKLOAD_API_UNAVAILABLE') && /waiting for the first X\.509-SVID/.test(e.message),
    );
    const seen: unknown[] = [];
    store.onSwap((next, previous) => seen.push(next, previous));
    const first = await reloadSnapshot({ config: store.config }, boot, material);
    store.swap(first);
    assert.equal(store.current, first);
    assert.equal(store.waitingFor, undefined);
    assert.deepEqual(seen, [first, undefined]);
    const served = new X509Certificate(material.certPem).serialNumber.toUpperCase();
    assert.equal(first.state.serverCertificate.serialNumber, served);
    assert.equal(first.state.trustBundle.anchors.length, 1);
  });

  it('builds no state without an SVID, and keeps restart-only sections as started', async () => {
    const boot = loaded({ workloadApi: { socket } });
    const withSvid = await reloadSnapshot({ config: boot.config }, boot, material);
    assert.deepEqual(withSvid.pendingRestart, []);
    await assert.rejects(
      reloadSnapshot({ config: boot.config }, boot),
      (e) =>
        isGatewayError(e, 'EGW_CONFIG_INVALID') && /identity\.workloadApi: no SVID from the agent yet/.test(e.message),
    );
    const changedAdmin = loaded({ workloadApi: { socket } }, { admin: { certExpiryWindow: '2h' } });
    const next = await reloadSnapshot({ config: boot.config }, changedAdmin, material);
    assert.deepEqual(next.pendingRestart, ['admin.certExpiryWindow']);
    assert.equal(next.config.admin.certExpiryWindow, boot.config.admin.certExpiryWindow);
    const files = loaded({ cert: pki.gateway.certPath, key: pki.gateway.keyPath, trustAnchors: pki.intermediatePath });
    await assert.rejects(reloadSnapshot({ config: boot.config }, files, material), (e) =>
      isGatewayError(e, 'EGW_RELOAD_FAILED'),
    );
  });
});
