import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { snatPool } from '../../src/core/snat-pool.ts';
import { parseSpiffeId } from '../../src/identity/spiffe-id.ts';
import { compilePolicy, type RuleSpec } from '../../src/policy/compile-policy.ts';
import { decideDestination } from '../../src/proxy/decide-destination.ts';
import type { GatewayState, ListenerSettings } from '../../src/proxy/gateway-state.ts';
import { createHostResolver } from '../../src/upstream/resolve-host.ts';

const TD = 'cluster.local';
const id = (ns: string) => parseSpiffeId(`spiffe://${TD}/ns/${ns}/sa/default`);
const egress: ListenerSettings = {
  name: 'egress',
  host: '127.0.0.1',
  port: 0,
  mode: 'connect',
  snat: snatPool('127.0.0.2'),
  maxConnections: 0,
};
const legacy: ListenerSettings = {
  name: 'legacy',
  host: '127.0.0.1',
  port: 0,
  mode: 'tcp',
  upstream: { host: '127.0.0.1', port: 8888 },
  maxConnections: 0,
};

/** The real resolver (static overrides, getaddrinfo otherwise), with every call recorded. */
function stateWith(rules: RuleSpec[], hosts: Record<string, string> = {}) {
  const asked: string[] = [];
  const real = createHostResolver(hosts);
  const resolver = {
    resolve(host: string) {
      asked.push(host);
      return real.resolve(host);
    },
  };
  // decideDestination reads only the policy and the resolver of the state.
  const state = { policy: compilePolicy(rules, TD, ['egress', 'legacy']), resolver } as unknown as GatewayState;
  return { state, asked };
}

describe('decideDestination (the one destination decision)', () => {
  const rules: RuleSpec[] = [
    { name: 'deny-internal', to: { cidrs: ['10.0.0.0/8'] }, action: 'deny' },
    {
      name: 'bookinfo',
      from: { namespaces: ['bookinfo'] },
      to: { hosts: ['*.example.com'] },
      action: 'allow',
      snat: '127.0.0.3',
    },
    { name: 'legacy', listeners: ['legacy'], from: { namespaces: ['bookinfo'] }, action: 'allow' },
  ];

  it('resolves for an identity a rule could allow, and not for one no rule could allow', async () => {
    const { state, asked } = stateWith(rules, { 'API.example.com': '203.0.113.10', 'evil.example.com': '10.9.9.9' });
    const allowed = await decideDestination(state, egress, id('bookinfo'), { host: 'API.Example.com.', port: 443 });
    assert.deepEqual(asked, ['api.example.com']);
    assert.equal(allowed.allow, true);
    assert.equal(allowed.allow && allowed.ip, '203.0.113.10');
    assert.equal(allowed.allow && allowed.snat, '127.0.0.3', 'the rule SNAT wins over the listener SNAT');
    const denied = await decideDestination(state, egress, id('other'), { host: 'data.attacker.example', port: 443 });
    assert.equal(denied.allow, false);
    assert.equal(!denied.allow && denied.code, 'EGW_POLICY_DENIED');
    assert.deepEqual(asked, ['api.example.com'], 'no lookup for the denied identity');
    const internal = await decideDestination(state, egress, id('bookinfo'), { host: 'evil.example.com', port: 443 });
    assert.equal(!internal.allow && internal.rule?.name, 'deny-internal', 'the cidr rule saw the resolved IP');
  });

  it("keeps the resolver's own error for an allowed host that does not resolve", async () => {
    const { state } = stateWith(rules);
    const verdict = await decideDestination(state, egress, id('bookinfo'), { host: 'nothing.example.com', port: 443 });
    assert.equal(verdict.allow, false);
    assert.equal(!verdict.allow && verdict.code, 'EGW_UPSTREAM_DNS');
    assert.match(verdict.reason, /cannot resolve nothing\.example\.com: ENOTFOUND/);
    assert.equal(verdict.rule?.name, 'bookinfo');
  });

  it('applies the SSRF guard to client destinations but not to a tcp listener upstream', async () => {
    const { state } = stateWith(rules, { 'local.example.com': '127.0.0.1' });
    const guarded = await decideDestination(state, egress, id('bookinfo'), { host: 'local.example.com', port: 80 });
    assert.equal(!guarded.allow && guarded.code, 'EGW_POLICY_DESTINATION_PROHIBITED');
    const fixed = await decideDestination(state, legacy, id('bookinfo'), { host: 'ignored.example.com', port: 1 });
    assert.equal(fixed.allow, true);
    assert.equal(fixed.allow && `${fixed.ip}:${fixed.port}`, '127.0.0.1:8888');
  });

  it('refuses a host spelling a resolver could read differently, before any lookup', async () => {
    const { state, asked } = stateWith(rules);
    const ok = await decideDestination(state, egress, id('bookinfo'), { host: '203.0.113.7', port: 443 });
    assert.equal(!ok.allow && ok.code, 'EGW_POLICY_DENIED');
    assert.equal(ok.ip, '203.0.113.7', 'a literal is its own address, in the deny too');
    const odd = await decideDestination(state, egress, id('bookinfo'), { host: '0127.0.0.1', port: 443 });
    assert.equal(!odd.allow && odd.code, 'EGW_PROXY_BAD_REQUEST');
    assert.deepEqual(asked, [], 'an IP literal is decided on as it is; nothing was looked up');
  });
});
