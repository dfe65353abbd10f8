import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseSpiffeId } from '../../src/identity/spiffe-id.ts';
import { compilePolicy, type RuleSpec } from '../../src/policy/compile-policy.ts';
import { DEFAULT_DENY_REASON, decide } from '../../src/policy/decide.ts';

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
    assert.equal(d.rule?.snat, '127.0.0.3');
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
