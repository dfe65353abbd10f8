import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseSpiffeId } from '../../src/identity/spiffe-id.ts';
import { compilePolicy, type RuleSpec } from '../../src/policy/compile-policy.ts';
import { checkPolicy } from '../../src/proxy/check-policy.ts';
import { decideDestination } from '../../src/proxy/decide-destination.ts';
import type { GatewayState, ListenerSettings } from '../../src/proxy/gateway-state.ts';
import { createHostResolver } from '../../src/upstream/resolve-host.ts';

const TD = 'cluster.local';
const id = (ns: string) => parseSpiffeId(`spiffe://${TD}/ns/${ns}/sa/default`);
const listener = (name: string, enforcement: 'enforce' | 'report'): ListenerSettings => ({
  name,
  host: '127.0.0.1',
  port: 0,
  mode: 'connect',
  enforcement,
  maxConnections: 0,
});
const enforce = listener('enforce', 'enforce');
const report = listener('report', 'report');

const rules: RuleSpec[] = [
  { name: 'never-metadata', to: { cidrs: ['169.254.169.254/32'] }, action: 'deny', enforce: 'always' },
  { name: 'stage-private', to: { cidrs: ['10.20.0.0/16'] }, action: 'deny' },
  { name: 'no-pastebin', to: { hosts: ['pastebin.example'] }, action: 'deny' },
  { name: 'bookinfo', from: { namespaces: ['bookinfo'] }, to: { hosts: ['*.example.com'] }, action: 'allow' },
];

function stateWith(hosts: Record<string, string>) {
  const asked: string[] = [];
  const real = createHostResolver(hosts);
  const resolver = {
    resolve(host: string) {
      asked.push(host);
      return real.resolve(host);
    },
  };
  const listeners = new Map([
    ['enforce', enforce],
    ['report', report],
  ]);
  const state = { policy: compilePolicy(rules, TD, ['enforce', 'report']), resolver, listeners };
  return { state: state as unknown as GatewayState, asked };
}

const HOSTS = {
  'api.example.com': '203.0.113.10',
  'pastebin.example': '203.0.113.20',
  'other.example.org': '203.0.113.30',
  'db.internal': '10.20.1.1',
  'loop.example.org': '127.0.0.1',
  'metadata.example.org': '169.254.169.254',
};

describe('report (monitor) mode in the one destination decision', () => {
  it('lets a deny rule through on a report listener as a would-deny, and refuses it on an enforce listener', async () => {
    const { state } = stateWith(HOSTS);
    const allowed = await decideDestination(state, report, id('bookinfo'), { host: 'api.example.com', port: 443 });
    assert.equal(allowed.allow, true, 'positive control: an allowed destination');
    assert.equal(allowed.allow && allowed.wouldDeny, undefined, 'an allow is not a would-deny');
    const refused = await decideDestination(state, enforce, id('bookinfo'), { host: 'pastebin.example', port: 443 });
    assert.equal(!refused.allow && refused.code, 'EGW_POLICY_DENIED');
    const through = await decideDestination(state, report, id('bookinfo'), { host: 'pastebin.example', port: 443 });
    assert.ok(through.allow && through.wouldDeny, JSON.stringify(through));
    assert.equal(through.rule?.name, 'no-pastebin');
    assert.equal(through.reason, 'denied by rule no-pastebin');
    assert.equal(through.allow && through.ip, '203.0.113.20', 'dialled at the checked address');
  });

  it('resolves for the default deny only in report mode, and names the to.cidrs rule it then meets', async () => {
    const { state, asked } = stateWith(HOSTS);
    const refused = await decideDestination(state, enforce, id('batch'), { host: 'other.example.org', port: 443 });
    assert.equal(!refused.allow && refused.code, 'EGW_POLICY_DENIED');
    assert.deepEqual(asked, [], 'enforce mode: no DNS for an identity no rule could allow');
    const through = await decideDestination(state, report, id('batch'), { host: 'other.example.org', port: 443 });
    assert.ok(through.allow && through.wouldDeny);
    assert.equal(through.rule, undefined);
    assert.equal(through.reason, 'no rule matched (default deny)');
    assert.deepEqual(asked, ['other.example.org'], 'report mode resolves, to dial');
    const staged = await decideDestination(state, report, id('batch'), { host: 'db.internal', port: 5432 });
    assert.ok(staged.allow && staged.wouldDeny);
    assert.equal(staged.rule?.name, 'stage-private', 'the would-deny names the to.cidrs rule found on the IP');
  });

  it('still refuses a rule with enforce: always on a report listener, by name and by IP literal', async () => {
    const { state } = stateWith(HOSTS);
    const control = await decideDestination(state, report, id('batch'), { host: '203.0.113.99', port: 80 });
    assert.ok(control.allow && control.wouldDeny, 'positive control: a default deny is let through');
    for (const host of ['metadata.example.org', '169.254.169.254']) {
      const verdict = await decideDestination(state, report, id('bookinfo'), { host, port: 80 });
      assert.equal(!verdict.allow && verdict.code, 'EGW_POLICY_DENIED', host);
      assert.equal(verdict.rule?.name, 'never-metadata', host);
    }
  });

  it('keeps the SSRF guard: a default deny into 127.0.0.0/8 is refused in both modes, a deny naming it passes in report', async () => {
    const { state } = stateWith(HOSTS);
    const enforced = await decideDestination(state, enforce, id('batch'), { host: 'loop.example.org', port: 80 });
    assert.equal(!enforced.allow && enforced.code, 'EGW_POLICY_DENIED');
    const reported = await decideDestination(state, report, id('batch'), { host: 'loop.example.org', port: 80 });
    assert.equal(!reported.allow && reported.code, 'EGW_POLICY_DESTINATION_PROHIBITED');
    // 10.20.0.0/16 is private (prohibited) too; the deny rule that names it lets it pass in report mode.
    const named = await decideDestination(state, report, id('batch'), { host: '10.20.3.4', port: 80 });
    assert.ok(named.allow && named.wouldDeny && named.rule?.name === 'stage-private', JSON.stringify(named));
    const namedEnforced = await decideDestination(state, enforce, id('batch'), { host: '10.20.3.4', port: 80 });
    assert.equal(!namedEnforced.allow && namedEnforced.code, 'EGW_POLICY_DENIED');
  });

  it('tcp mode: a report listener lets the default deny through to its fixed upstream; enforce resets', async () => {
    const { state } = stateWith(HOSTS);
    const tcp = (name: string, enforcement: 'enforce' | 'report'): ListenerSettings => ({
      ...listener(name, enforcement),
      mode: 'tcp',
      upstream: { host: 'other.example.org', port: 8888 },
    });
    const refused = await decideDestination(state, tcp('enforce', 'enforce'), id('batch'));
    assert.equal(!refused.allow && refused.code, 'EGW_POLICY_DENIED');
    const through = await decideDestination(state, tcp('report', 'report'), id('batch'));
    assert.ok(through.allow && through.wouldDeny, JSON.stringify(through));
    assert.equal(through.allow && through.ip, '203.0.113.30');
  });

  it('shows a would-deny in policy check (exit 0: the traffic passes) and a deny on the enforce listener', async () => {
    const { state } = stateWith(HOSTS);
    const spiffeId = id('bookinfo').uri;
    const denied = await checkPolicy(state, { spiffeId, listener: 'enforce', dest: 'pastebin.example:443' });
    assert.equal(denied.allow, false);
    assert.match(denied.summary, /^DENY listener=enforce .*status=403 code=EGW_POLICY_DENIED/);
    const would = await checkPolicy(state, { spiffeId, listener: 'report', dest: 'pastebin.example:443' });
    assert.equal(would.allow, true);
    assert.equal(would.wouldDeny, true);
    assert.match(would.summary, /^WOULD-DENY \(report mode, let through\) listener=report rule=no-pastebin /);
  });
});
