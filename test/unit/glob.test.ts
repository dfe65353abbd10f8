import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { canonicalHost } from '../../src/core/host-name.ts';
import {
  compileHostGlob,
  compileSpiffeGlob,
  hostMatches,
  type SegmentGlob,
  spiffeIdMatches,
} from '../../src/policy/glob.ts';

function hostGlob(pattern: string): SegmentGlob {
  const result = compileHostGlob(pattern);
  if ('problem' in result) assert.fail(`${pattern} was refused: ${result.problem}`);
  return result.glob;
}

function problemOf(pattern: string): string {
  const result = compileHostGlob(pattern);
  if ('glob' in result) assert.fail(`${pattern} compiled to ${JSON.stringify(result.glob)}`);
  return result.problem;
}

describe('host globs', () => {
  const cases: Array<[string, string, boolean]> = [
    ['*.example.com', 'api.example.com', true],
    ['*.example.com', 'example.com', false],
    ['*.example.com', 'a.b.example.com', false],
    ['**.example.com', 'a.b.example.com', true],
    ['**.example.com', 'example.com', false],
    ['api.example.com', 'API.Example.COM.', true],
    ['api.example.com', 'api.example.co', false],
    ['*.bücher.example', 'www.xn--bcher-kva.example', true],
    ['*.example.com', 'evil-example.com', false],
    ['API.Example.COM.', 'api.example.com', true],
    ['*.xn--bcher-kva.example', 'www.bücher.example', true],
    ['**', 'a.example.com', true],
    ['**', '127.0.0.1', false],
    ['**', '::1', false],
    ['*.*.*.*', '127.0.0.1', false],
    ['*.0.113.example', 'x.0.113.example', true],
  ];
  for (const [pattern, host, expected] of cases) {
    it(`${expected ? 'matches' : 'does not match'} ${host} with ${pattern}`, () => {
      assert.equal(hostMatches(hostGlob(pattern), host), expected);
    });
  }

  it('compiles a numeric label as a label, not as an IPv4 number (was 0.0.0.203)', () => {
    assert.deepEqual(hostGlob('*.203.example'), ['*', '203', 'example']);
    assert.equal(hostMatches(hostGlob('*.203.example'), 'a.203.example'), true);
  });

  it('compiles a pattern through the request canonicaliser (full-width dots are dots)', () => {
    assert.deepEqual(hostGlob('api\u3002example.com'), ['api', 'example', 'com']);
    assert.equal(hostMatches(hostGlob('api\u3002example.com'), canonicalHost('api.example.com') ?? ''), true);
    assert.match(problemOf('*.example\u3002com'), /IDNA reads as a dot/);
  });

  const refused: Array<[string, RegExp]> = [
    ['127.0.0.1', /is an IP address; .*to\.cidrs.*"127\.0\.0\.1\/32"/],
    ['[::1]', /is an IP address; .*"::1\/128"/],
    ['2001:DB8:0:0::1', /is an IP address; .*to\.cidrs/],
    ['203.0.113.*', /looks like an IPv4 address or range; .*"203\.0\.113\.0\/24"/],
    ['10.*.*.*', /"10\.0\.0\.0\/8"/],
    ['10.*', /looks like an IPv4 address or range/],
    ['0x7f.*', /looks like an IPv4 address or range/],
    ['127.0.0.1.', /looks like an IPv4 address or range.*"127\.0\.0\.1\/32"/],
    ['203.0.113.0/24', /is an IP range; .*to\.cidrs/],
    ['2001:db8::*', /looks like an IPv6 address or range; .*to\.cidrs/],
    ['2001:db8::/32', /is an IP range/],
    ['example.123', /could never match/],
    ['a..example.com', /could never match/],
    ['*foo.example.com', /could never match/],
    ['ex%61mple.com', /could never match/],
    ['example.com/x', /could never match/],
    ['', /could never match/],
  ];
  for (const [pattern, message] of refused) {
    it(`refuses ${JSON.stringify(pattern)} and says why`, () => assert.match(problemOf(pattern), message));
  }
});

describe('SPIFFE ID globs', () => {
  const cases: Array<[string, string, boolean]> = [
    ['spiffe://cluster.local/ns/bookinfo/sa/*', 'spiffe://cluster.local/ns/bookinfo/sa/productpage', true],
    ['spiffe://cluster.local/ns/*/sa/productpage', 'spiffe://cluster.local/ns/bookinfo/sa/productpage', true],
    ['spiffe://cluster.local/ns/bookinfo/**', 'spiffe://cluster.local/ns/bookinfo/sa/productpage', true],
    ['spiffe://cluster.local/ns/bookinfo/**', 'spiffe://cluster.local/ns/bookinfo', false],
    ['spiffe://cluster.local/ns/bookinfo/sa/*', 'spiffe://cluster.local/ns/bookinfo/sa/a/b', false],
    ['spiffe://cluster.local/ns/bookinfo/sa/*', 'spiffe://cluster.local/ns/bookinfo-evil/sa/a', false],
    ['spiffe://cluster.local/ns/bookinfo/sa/*', 'spiffe://other.local/ns/bookinfo/sa/a', false],
  ];
  for (const [pattern, id, expected] of cases) {
    it(`${expected ? 'matches' : 'does not match'} ${id} with ${pattern}`, () => {
      assert.equal(spiffeIdMatches(compileSpiffeGlob(pattern), id), expected);
    });
  }
});
