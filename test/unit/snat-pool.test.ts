import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { buildGatewayState } from '../../src/config/build-state.ts';
import { loadConfig, parseConfig } from '../../src/config/load-config.ts';
import { isGatewayError } from '../../src/core/errors.ts';
import { identityIndex, snatOrder, snatPool } from '../../src/core/snat-pool.ts';
import { parseSpiffeId } from '../../src/identity/spiffe-id.ts';
import { compilePolicy } from '../../src/policy/compile-policy.ts';
import { decideDestination } from '../../src/proxy/decide-destination.ts';
import type { GatewayState, ListenerSettings } from '../../src/proxy/gateway-state.ts';
import { createHostResolver } from '../../src/upstream/resolve-host.ts';
import { serviceAccountsOnEachAddress } from '../helpers/snat-identities.ts';
import { writeTestConfig } from '../helpers/test-gateway.ts';
import { createTestPki, type TestPki } from '../helpers/test-pki.ts';

const TD = 'cluster.local';
const POOL = ['127.0.0.2', '127.0.0.5'];

function idsOnEachAddress(): [string, string] {
  const [a, b] = serviceAccountsOnEachAddress(TD, 'bookinfo');
  assert.notEqual(
    identityIndex(`spiffe://${TD}/ns/bookinfo/sa/${a}`, 2),
    identityIndex(`spiffe://${TD}/ns/bookinfo/sa/${b}`, 2),
  );
  return [`spiffe://${TD}/ns/bookinfo/sa/${a}`, `spiffe://${TD}/ns/bookinfo/sa/${b}`];
}

describe('SNAT pools: which address a connection leaves from', () => {
  it('per-identity: one stable address per SPIFFE ID, the rest of the pool as failover order', () => {
    const pool = snatPool(POOL);
    const [first, second] = idsOnEachAddress();
    assert.deepEqual(snatOrder(pool, first), ['127.0.0.2', '127.0.0.5']);
    assert.deepEqual(snatOrder(pool, second), ['127.0.0.5', '127.0.0.2']);
    for (let i = 0; i < 5; i++) assert.equal(snatOrder(pool, second)[0], '127.0.0.5', 'stable across calls');
    // A pool compiled again (a reload) keeps the same choice: the hash, not a counter.
    assert.equal(snatOrder(snatPool([...POOL]), second)[0], '127.0.0.5');
  });

  it('round-robin: alternates for one identity, and starts afresh for a new pool', () => {
    const pool = snatPool(['127.0.0.2', '127.0.0.5', '127.0.0.6'], 'round-robin');
    const id = `spiffe://${TD}/ns/bookinfo/sa/default`;
    const firsts = Array.from({ length: 6 }, () => snatOrder(pool, id)[0]);
    assert.deepEqual(firsts, ['127.0.0.2', '127.0.0.5', '127.0.0.6', '127.0.0.2', '127.0.0.5', '127.0.0.6']);
    assert.deepEqual(snatOrder(pool, id), ['127.0.0.2', '127.0.0.5', '127.0.0.6']);
    assert.equal(snatOrder(snatPool(POOL, 'round-robin'), id)[0], '127.0.0.2');
  });

  it('decideDestination picks from the rule pool over the listener pool, with the fallbacks', async () => {
    const [first, second] = idsOnEachAddress();
    const listener: ListenerSettings = {
      name: 'egress',
      host: '127.0.0.1',
      port: 0,
      mode: 'connect',
      snat: snatPool(['127.0.0.9']),
      maxConnections: 0,
    };
    const policy = compilePolicy(
      [
        { name: 'pooled', to: { hosts: ['api.example.com'] }, action: 'allow', snat: POOL },
        { name: 'plain', to: { hosts: ['other.example.com'] }, action: 'allow' },
      ],
      TD,
      ['egress'],
    );
    const resolver = createHostResolver({ 'api.example.com': '203.0.113.10', 'other.example.com': '203.0.113.11' });
    const state = { policy, resolver } as unknown as GatewayState;
    const dest = { host: 'api.example.com', port: 443 };
    const a = await decideDestination(state, listener, parseSpiffeId(first), dest);
    const b = await decideDestination(state, listener, parseSpiffeId(second), dest);
    assert.ok(a.allow && b.allow);
    assert.deepEqual([a.snat, a.snatFallbacks], ['127.0.0.2', ['127.0.0.5']]);
    assert.deepEqual([b.snat, b.snatFallbacks], ['127.0.0.5', ['127.0.0.2']]);
    const plain = await decideDestination(state, listener, parseSpiffeId(first), {
      host: 'other.example.com',
      port: 1,
    });
    assert.ok(plain.allow);
    assert.deepEqual([plain.snat, plain.snatFallbacks], ['127.0.0.9', undefined], 'the listener address, no pool');
  });
});

describe('SNAT pools in the configuration', () => {
  let pki: TestPki;
  before(async () => {
    pki = await createTestPki();
  });
  after(() => pki.cleanup());

  const base = `
identity: { trustDomain: cluster.local, trustAnchors: a.pem, cert: c.pem, key: k.pem }
listeners:
  - { name: egress, listen: "127.0.0.1:3128", mode: connect, SNAT }
`;
  it('accepts a list with a selection, and refuses a pool of mixed families or an unknown selection', () => {
    const config = parseConfig(base.replace('SNAT', 'snat: [127.0.0.2, 127.0.0.5], snatSelection: round-robin'), 'c');
    assert.deepEqual(config.listeners[0]?.snat, ['127.0.0.2', '127.0.0.5']);
    assert.equal(config.listeners[0]?.snatSelection, 'round-robin');
    assert.equal(parseConfig(base.replace('SNAT', 'snat: 127.0.0.2'), 'c').listeners[0]?.snatSelection, 'per-identity');
    for (const [snat, message] of [
      ['snat: [127.0.0.2, "::1"]', /listeners\[0\]\.snat: the addresses of a SNAT pool must all be IPv4 or all IPv6/],
      ['snat: []', /listeners\[0\]\.snat/],
      ['snat: [127.0.0.2], snatSelection: random', /listeners\[0\]\.snatSelection/],
    ] as const) {
      assert.throws(
        () => parseConfig(base.replace('SNAT', snat), 'cfg.yaml'),
        (e) => isGatewayError(e, 'EGW_CONFIG_INVALID') && message.test((e as Error).message),
        snat,
      );
    }
  });

  it('test-binds every address of a pool at load, naming the member that is not bindable', async () => {
    const build = async (snat: string[]) => {
      const path = writeTestConfig(pki, {
        listeners: [{ name: 'egress', listen: '127.0.0.1:0', mode: 'connect' }],
        rules: [{ name: 'pooled', action: 'allow', snat }],
      });
      const { config } = loadConfig(path);
      return buildGatewayState(config, path);
    };
    const state = await build(['127.0.0.2', '127.0.0.5']);
    assert.deepEqual(state.policy.rules[0]?.snat?.addresses, ['127.0.0.2', '127.0.0.5'], 'positive control');
    // 203.0.113.77 (TEST-NET-3) is on no interface here: binding it fails, nothing is sent.
    await assert.rejects(build(['127.0.0.2', '203.0.113.77']), (e) => {
      assert.ok(isGatewayError(e, 'EGW_SNAT_UNBINDABLE'), String(e));
      assert.match((e as Error).message, /rules\[0\]\.snat\[1\]: SNAT address 203\.0\.113\.77 is not bindable/);
      return true;
    });
  });
});
