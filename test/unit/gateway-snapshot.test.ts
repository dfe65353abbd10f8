import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadConfig, parseConfig } from '../../src/config/load-config.ts';
import { isGatewayError } from '../../src/core/errors.ts';
import { watchedCertificates } from '../../src/gateway/certificate-list.ts';
import { bootSnapshot, type GatewaySnapshot, reloadSnapshot } from '../../src/gateway/gateway-snapshot.ts';
import { readinessOf } from '../../src/gateway/readiness.ts';
import { effectiveConfig, listenerShapeChange, pendingRestart } from '../../src/gateway/restart-only.ts';
import { SnapshotStore } from '../../src/gateway/snapshot-store.ts';
import { writeTestConfig } from '../helpers/test-gateway.ts';
import { createTestPki, type TestPki } from '../helpers/test-pki.ts';

const base = `
identity: { trustDomain: cluster.local, trustAnchors: a.pem, cert: c.pem, key: k.pem }
listeners:
  - { name: egress, listen: "127.0.0.1:3128", mode: connect }
`;
const config = (extra = '') => parseConfig(`${base}${extra}`, 'cfg.yaml');

describe('restart-only sections', () => {
  it('lists each changed restart-only key, sorted, and nothing for reloadable ones', () => {
    const running = config();
    const loaded = config(
      'admin: { certExpiryWindow: 48h, token: a-new-token-of-16-chars }\nworkers: 2\naudit: { sinks: [] }\nlimits: { maxHeaderBytes: 4096 }\n',
    );
    assert.deepEqual(pendingRestart(running, loaded), [
      'admin.certExpiryWindow',
      'admin.token',
      'audit.sinks',
      'workers',
    ]);
    assert.deepEqual(pendingRestart(running, config('limits: { maxHeaderBytes: 4096 }\n')), []);
  });

  it('ignores key order within a section', () => {
    const a = config('admin: { listen: "127.0.0.1:1", watch: false }\n');
    const b = config('admin: { watch: false, listen: "127.0.0.1:1" }\n');
    assert.deepEqual(pendingRestart(a, config('admin: { listen: "127.0.0.1:2", watch: false }\n')), ['admin.listen']);
    assert.deepEqual(pendingRestart(a, b), []);
  });

  it('takes reloadable sections from the file and restart-only ones from the running config', () => {
    const running = config();
    const merged = effectiveConfig(
      running,
      config('admin: { certExpiryWindow: 48h }\nlimits: { maxHeaderBytes: 4096 }\n'),
    );
    assert.equal(merged.limits.maxHeaderBytes, 4096);
    assert.equal(merged.admin.certExpiryWindow, 3_600_000);
    assert.equal(merged.audit, running.audit);
  });

  it('refuses a listener shape change but not a maxConnections change', () => {
    const running = config();
    assert.equal(
      listenerShapeChange(running, parseConfig(base.replace('3128', '3129'), 'cfg.yaml')),
      'listeners were added, removed, renamed, moved or changed mode; restart the gateway to apply that',
    );
    assert.equal(
      listenerShapeChange(running, parseConfig(base.replace('connect }', 'connect, maxConnections: 1 }'), 'c')),
      undefined,
    );
  });
});

describe('readiness', () => {
  const now = Date.parse('2026-12-01T00:00:00Z');
  const cert = (label: string, hoursLeft: number) => ({
    role: 'anchor' as const,
    subject: label,
    label,
    notAfter: new Date(now + hoursLeft * 3_600_000),
  });
  const facts = {
    draining: false,
    listenersBound: true,
    certificates: [cert('leaf', 24)],
    crls: [],
    expiryWindowMs: 3_600_000,
    nowMs: now,
  };

  it('is ready with bound listeners and certificates outside the window', () => {
    assert.deepEqual(readinessOf(facts), { ready: true, reasons: [] });
  });

  it('names a certificate inside the window and one already expired', () => {
    const result = readinessOf({ ...facts, certificates: [cert('soon', 0.5), cert('gone', -1), cert('fine', 24)] });
    assert.equal(result.ready, false);
    assert.deepEqual(result.reasons, [
      'soon expires at 2026-12-01T00:30:00.000Z, within admin.certExpiryWindow',
      'gone expired at 2026-11-30T23:00:00.000Z',
    ]);
  });

  it('with a window of 0 fails on expiry only', () => {
    assert.equal(readinessOf({ ...facts, expiryWindowMs: 0, certificates: [cert('soon', 0.5)] }).ready, true);
    assert.equal(readinessOf({ ...facts, expiryWindowMs: 0, certificates: [cert('gone', -0.1)] }).ready, false);
  });

  it('names each CRL that is not valid, with its state and why', () => {
    const crl = (status: 'valid' | 'stale', reason: string | undefined) =>
      ({ source: `/crl/${status}.pem`, issuer: 'CN=Mesh CA', status, reason, nextUpdate: undefined }) as const;
    assert.equal(readinessOf({ ...facts, crls: [crl('valid', undefined)] }).ready, true, 'positive control');
    const result = readinessOf({ ...facts, crls: [crl('valid', undefined), crl('stale', 'past its nextUpdate X')] });
    assert.deepEqual(result.reasons, ['CRL /crl/stale.pem of "CN=Mesh CA" is stale: past its nextUpdate X']);
  });

  it('reports draining instead of the listeners it closed on purpose', () => {
    assert.deepEqual(readinessOf({ ...facts, listenersBound: false }).reasons, ['not every listener is bound']);
    assert.deepEqual(readinessOf({ ...facts, draining: true, listenersBound: false }).reasons, ['draining']);
  });
});

describe('snapshot', () => {
  let pki: TestPki;
  let path: string;
  before(async () => {
    pki = await createTestPki();
    path = writeTestConfig(pki, { listeners: [{ name: 'egress', listen: '127.0.0.1:0', mode: 'connect' }] });
  });
  after(() => {
    rmSync(dirname(path), { recursive: true, force: true });
    pki.cleanup();
  });

  it('lists the gateway leaf and every anchor once, with the SPIFFE ID as the gateway subject', async () => {
    const snapshot = await bootSnapshot(loadConfig(path));
    const list = watchedCertificates(snapshot.state);
    assert.deepEqual(
      list.map((c) => [c.role, c.label]),
      [
        ['gateway', 'gateway certificate'],
        ['anchor', `trust anchor "${snapshot.state.trustBundle.anchors[0]?.subject}"`],
      ],
    );
    assert.equal(list[0]?.subject, 'spiffe://cluster.local/ns/bookinfo/sa/bigip-proxy');
    assert.equal(list[0]?.notAfter.getTime(), pki.gateway.leaf.cert.notAfter.getTime());
  });

  it('is deep-frozen, and a reload refused for its listeners changes nothing', async () => {
    const boot = await bootSnapshot(loadConfig(path));
    assert.ok(Object.isFrozen(boot) && Object.isFrozen(boot.config.admin) && Object.isFrozen(boot.state));
    const loaded = loadConfig(path);
    const next = await reloadSnapshot(boot, loaded); // positive control: the same file reloads
    assert.deepEqual(next.pendingRestart, []);
    const moved = {
      ...loaded,
      config: { ...loaded.config, listeners: [{ ...loaded.config.listeners[0], listen: '127.0.0.1:1' }] },
    };
    await assert.rejects(reloadSnapshot(boot, moved as typeof loaded), (e) => isGatewayError(e, 'EGW_RELOAD_FAILED'));
  });

  it('swaps as a whole and tells every listener which snapshot replaced which', async () => {
    const first = await bootSnapshot(loadConfig(path));
    const second = await reloadSnapshot(first, loadConfig(path));
    const store = new SnapshotStore(first);
    const seen: Array<[GatewaySnapshot, GatewaySnapshot | undefined]> = [];
    const stop = store.onSwap((next, previous) => seen.push([next, previous]));
    store.swap(second);
    stop();
    store.swap(first);
    assert.equal(store.current, first);
    assert.equal(seen.length, 1);
    assert.equal(seen[0]?.[0], second);
    assert.equal(seen[0]?.[1], first);
  });
});
