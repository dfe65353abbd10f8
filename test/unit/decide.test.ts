import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseSpiffeId } from '../../src/identity/spiffe-id.ts';
import { compilePolicy, type RuleSpec } from '../../src/policy/compile-policy.ts';
import { DEFAULT_DENY_REASON, decide, decideByName, UNRESOLVED_DENY_REASON } from '../../src/policy/decide.ts';

const TD = 'cluster.local';
const id = (ns: string, sa: string) => parseSpiffeId(`spiffe://${TD}/ns/${ns}/sa/${sa}`);
const policyOf = (rules: RuleSpec[]) => compilePolicy(rules, TD, ['egress', 'legacy']);

describe('decide (first match wins, default deny)', () => {
  const policy = policyOf([
    { name: 'deny-batch', from: { serviceAccounts: ['bookinfo/batch'] }, action: 'deny' },
    {
      name: 'bookinfo-https',
      listeners: ['egress'],
      from: { namespaces: ['bookinfo'] },
      to: { hosts: ['*.example.com'], ports: [443] },
      action: 'allow',
      snat: '127.0.0.3',
    },
    {
      name: 'reviews-by-id',
      from: { spiffeIds: ['spiffe://cluster.local/ns/reviews/sa/*'] },
      to: { cidrs: ['203.0.113.0/24'] },
      action: 'allow',
    },
    { name: 'legacy', listeners: ['legacy'], from: { namespaces: ['bookinfo'] }, action: 'allow' },
  ]);

  it('allows by namespace, host glob and port, and carries the rule and its SNAT', () => {
    const d = decide(policy, {
      listener: 'egress',
      identity: id('bookinfo', 'productpage'),
      destination: { host: 'api.example.com', port: 443 },
    });
    assert.equal(d.allow, true);
    assert.equal(d.rule?.name, 'bookinfo-https');
    assert.deepEqual(d.rule?.snat?.addresses, ['127.0.0.3']);
  });

  it('denies by an earlier deny rule even when a later rule would allow', () => {
    const d = decide(policy, {
      listener: 'egress',
      identity: id('bookinfo', 'batch'),
      destination: { host: 'api.example.com', port: 443 },
    });
    assert.equal(d.allow, false);
    assert.equal(d.rule?.name, 'deny-batch');
    assert.equal(d.reason, 'denied by rule deny-batch');
  });

  it('denies by default with no rule when nothing matches', () => {
    const d = decide(policy, {
      listener: 'egress',
      identity: id('other', 'x'),
      destination: { host: 'api.example.com', port: 443 },
    });
    assert.deepEqual(d, { allow: false, reason: DEFAULT_DENY_REASON });
  });

  it('does not match a port outside to.ports', () => {
    assert.equal(
      decide(policy, {
        listener: 'egress',
        identity: id('bookinfo', 'p'),
        destination: { host: 'api.example.com', port: 80 },
      }).allow,
      false,
    );
  });

  it('does not match the apex domain with *.example.com', () => {
    assert.equal(
      decide(policy, {
        listener: 'egress',
        identity: id('bookinfo', 'p'),
        destination: { host: 'example.com', port: 443 },
      }).allow,
      false,
    );
  });

  it('matches a resolved IP in to.cidrs and not an IP outside it', () => {
    assert.equal(
      decide(policy, {
        listener: 'egress',
        identity: id('reviews', 'r'),
        destination: { host: 'x.test', ip: '203.0.113.9', port: 1 },
      }).allow,
      true,
    );
    assert.equal(
      decide(policy, {
        listener: 'egress',
        identity: id('reviews', 'r'),
        destination: { host: 'x.test', ip: '198.51.100.1', port: 1 },
      }).allow,
      false,
    );
    assert.equal(
      decide(policy, { listener: 'egress', identity: id('reviews', 'r'), destination: { host: 'x.test', port: 1 } })
        .allow,
      false,
      'unknown IP never matches cidrs',
    );
  });

  it('applies listener restrictions', () => {
    assert.equal(decide(policy, { listener: 'legacy', identity: id('bookinfo', 'p') }).rule?.name, 'legacy');
    assert.equal(decide(policy, { listener: 'egress', identity: id('bookinfo', 'p') }).allow, false);
  });
});

describe('compilePolicy', () => {
  const bad: Array<[string, RuleSpec[], RegExp]> = [
    [
      'an unknown listener',
      [{ name: 'r', listeners: ['nope'], action: 'allow' }],
      /rules\[0\]\.listeners\[0\]: no listener is named "nope"/,
    ],
    [
      'a malformed CIDR',
      [{ name: 'r', to: { cidrs: ['10.0.0.0/99'] }, action: 'allow' }],
      /rules\[0\]\.to\.cidrs\[0\]/,
    ],
    [
      'a SPIFFE glob of another trust domain',
      [{ name: 'r', from: { spiffeIds: ['spiffe://other/ns/a/sa/*'] }, action: 'allow' }],
      /rules\[0\]\.from\.spiffeIds\[0\]: .*outside the configured trust domain/,
    ],
    [
      '** in the middle of a SPIFFE glob',
      [{ name: 'r', from: { spiffeIds: ['spiffe://cluster.local/**/sa/x'] }, action: 'allow' }],
      /only allowed as the last segment/,
    ],
    [
      'a service account without namespace',
      [{ name: 'r', from: { serviceAccounts: ['productpage'] }, action: 'allow' }],
      /<namespace>\/<service-account>/,
    ],
    [
      'a host with a path',
      [{ name: 'r', to: { hosts: ['example.com/x'] }, action: 'allow' }],
      /rules\[0\]\.to\.hosts\[0\]/,
    ],
    [
      'duplicate rule names',
      [
        { name: 'r', action: 'allow' },
        { name: 'r', action: 'deny' },
      ],
      /rules\[1\]\.name: duplicate/,
    ],
  ];
  for (const [what, rules, message] of bad) {
    it(`rejects ${what} and names the key`, () => assert.throws(() => policyOf(rules), message));
  }
});

describe('decideByName (decide on the name first, DNS only when an IP could change the answer)', () => {
  const policy = policyOf([
    { name: 'deny-internal', to: { cidrs: ['10.0.0.0/8'] }, action: 'deny' },
    { name: 'bookinfo-https', from: { namespaces: ['bookinfo'] }, to: { hosts: ['*.example.com'] }, action: 'allow' },
    {
      name: 'reviews-by-ip',
      from: { namespaces: ['reviews'] },
      to: { cidrs: ['203.0.113.0/24'], ports: [443] },
      action: 'allow',
    },
    { name: 'deny-batch-names', from: { namespaces: ['batch'] }, to: { hosts: ['*.example.com'] }, action: 'deny' },
  ]);
  const input = (ns: string, host: string, port = 443) => ({
    listener: 'egress',
    identity: id(ns, 'x'),
    destination: { host, port },
  });

  it('needs the IP while an earlier to.cidrs rule could still change an allow', () => {
    // Positive control: the identity has an allow rule, and a cidr deny rule comes first.
    assert.equal(decideByName(policy, input('bookinfo', 'api.example.com')), undefined);
    assert.equal(
      decide(policy, {
        ...input('bookinfo', 'api.example.com'),
        destination: { host: 'api.example.com', port: 443, ip: '10.1.2.3' },
      }).allow,
      false,
    );
  });

  it('denies without an IP when no rule from the first IP-dependent one on could allow', () => {
    const d = decideByName(policy, input('other', 'c2VjcmV0.attacker.example'));
    assert.deepEqual(d, { allow: false, reason: UNRESOLVED_DENY_REASON });
    const batch = decideByName(policy, input('batch', 'api.example.com'));
    assert.equal(batch?.allow, false);
  });

  it('needs the IP for a cidr-only allow rule on its port, and not on another port', () => {
    assert.equal(decideByName(policy, input('reviews', 'reviews.partner.example', 443)), undefined);
    assert.equal(decideByName(policy, input('reviews', 'reviews.partner.example', 80))?.allow, false);
  });

  it('decides by name when no to.cidrs rule applies', () => {
    const names = policyOf([
      { name: 'bookinfo-https', from: { namespaces: ['bookinfo'] }, to: { hosts: ['*.example.com'] }, action: 'allow' },
    ]);
    const allowed = decideByName(names, input('bookinfo', 'api.example.com'));
    assert.equal(allowed?.allow, true);
    assert.equal(allowed?.rule?.name, 'bookinfo-https');
    assert.deepEqual(decideByName(names, input('bookinfo', 'api.example.org')), {
      allow: false,
      reason: DEFAULT_DENY_REASON,
    });
  });

  it('never disagrees with decide() for any IP when it answers (exhaustive over a small grid)', () => {
    const hosts = ['api.example.com', 'example.com', 'x.partner.example', '203.0.113.9', '10.0.0.1'];
    const ips = ['10.0.0.1', '203.0.113.9', '198.51.100.1'];
    let answered = 0;
    for (const ns of ['bookinfo', 'reviews', 'batch', 'other'])
      for (const host of hosts)
        for (const port of [80, 443]) {
          const byName = decideByName(policy, input(ns, host, port));
          if (!byName) continue;
          answered++;
          for (const ip of ips) {
            const full = decide(policy, { ...input(ns, host, port), destination: { host, port, ip } });
            assert.equal(byName.allow, full.allow, `${ns} ${host}:${port} via ${ip}`);
            if (byName.allow) assert.equal(byName.rule?.name, full.rule?.name);
          }
        }
    assert.ok(answered >= 10, `answered ${answered} cases by name`);
  });
});

describe('host rules mean what they say (issue 10 item 4)', () => {
  const allowAll: RuleSpec = { name: 'allow-all', action: 'allow' };
  const denyFirst = (to: RuleSpec['to']) => policyOf([{ name: 'deny', to, action: 'deny' }, allowAll]);
  const verdict = (policy: ReturnType<typeof policyOf>, host: string, ip: string) =>
    decide(policy, { listener: 'egress', identity: id('bookinfo', 'p'), destination: { host, ip, port: 443 } });

  // Each of these deny rules used to compile and then never match, so traffic fell through to allow-all.
  const refused: Array<[string, RegExp]> = [
    ['127.0.0.1', /rules\[0\]\.to\.hosts\[0\]: "127\.0\.0\.1" is an IP address; .*to\.cidrs.*"127\.0\.0\.1\/32"/],
    ['203.0.113.*', /rules\[0\]\.to\.hosts\[0\]: "203\.0\.113\.\*" looks like an IPv4 .*"203\.0\.113\.0\/24"/],
    ['2001:DB8:0:0::1', /rules\[0\]\.to\.hosts\[0\]: "2001:DB8:0:0::1" is an IP address; .*to\.cidrs/],
    ['[::1]', /rules\[0\]\.to\.hosts\[0\]: "\[::1\]" is an IP address/],
  ];
  for (const [pattern, message] of refused) {
    it(`refuses to.hosts ${pattern} at compile time and points to to.cidrs`, () => {
      assert.ok(denyFirst({ hosts: ['api.example.com'] }), 'positive control: a host name compiles');
      assert.throws(() => denyFirst({ hosts: [pattern] }), message);
    });
  }

  it('denies 127.0.0.1 with the to.cidrs form, whether the client names the IP or a name resolving to it', () => {
    const policy = denyFirst({ cidrs: ['127.0.0.1/32'] });
    assert.equal(verdict(policy, '127.0.0.2', '127.0.0.2').allow, true, 'positive control');
    assert.equal(verdict(policy, '127.0.0.1', '127.0.0.1').reason, 'denied by rule deny');
    assert.equal(verdict(policy, 'localhost', '127.0.0.1').reason, 'denied by rule deny');
  });

  it('denies 203.0.113.0/24 with the to.cidrs form', () => {
    const policy = denyFirst({ cidrs: ['203.0.113.0/24'] });
    assert.equal(verdict(policy, '198.51.100.1', '198.51.100.1').allow, true, 'positive control');
    assert.equal(verdict(policy, '203.0.113.9', '203.0.113.9').reason, 'denied by rule deny');
  });

  it('denies a non-canonical IPv6 CIDR in every spelling of the address', () => {
    const policy = denyFirst({ cidrs: ['2001:DB8:0:0::1/128'] });
    assert.equal(verdict(policy, '2001:db8::2', '2001:db8::2').allow, true, 'positive control');
    for (const ip of ['2001:db8::1', '2001:0db8:0000::0001', '2001:DB8::1'])
      assert.equal(verdict(policy, ip, ip).reason, 'denied by rule deny', ip);
  });

  it('matches a deny glob with numeric labels as labels (not as an IPv4 number)', () => {
    const policy = denyFirst({ hosts: ['*.203.example'] });
    assert.equal(verdict(policy, 'a.204.example', '198.51.100.1').allow, true, 'positive control');
    assert.equal(verdict(policy, 'A.203.Example.', '198.51.100.1').reason, 'denied by rule deny');
  });

  it('never lets a host glob match an IP literal (addresses are matched by to.cidrs)', () => {
    const policy = policyOf([{ name: 'any-name', to: { hosts: ['**'] }, action: 'allow' }]);
    assert.equal(verdict(policy, 'api.example.com', '198.51.100.1').allow, true, 'positive control');
    assert.equal(verdict(policy, '198.51.100.1', '198.51.100.1').reason, DEFAULT_DENY_REASON);
  });

  it('refuses a destination host without a canonical spelling instead of skipping deny globs', () => {
    const policy = denyFirst({ hosts: ['secret.example.com'] });
    assert.equal(verdict(policy, 'other.example.com', '198.51.100.1').allow, true, 'positive control');
    const d = verdict(policy, 'secret.ex\\097mple.com', '198.51.100.1');
    assert.equal(d.allow, false);
    assert.match(d.reason, /has no canonical spelling/);
  });
});
