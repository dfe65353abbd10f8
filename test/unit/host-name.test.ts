import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { canonicalHost } from '../../src/core/host-name.ts';
import { canonicalIp } from '../../src/core/ip-set.ts';
import { parseAuthority } from '../../src/proxy/connect-mode.ts';
import { prohibitedDestinations } from '../../src/upstream/prohibited-ranges.ts';

describe('canonicalHost', () => {
  const same: Array<[string, string]> = [
    ['API.Example.COM', 'api.example.com'],
    ['api.example.com.', 'api.example.com'],
    ['bücher.example', 'xn--bcher-kva.example'],
    ['127.0.0.1', '127.0.0.1'],
    ['[::1]', '::1'],
    ['[64:ff9b:0:0:0:0:a9fe:a9fe]', '64:ff9b::a9fe:a9fe'],
    ['::ffff:127.0.0.1', '::ffff:7f00:1'],
    ['localhost', 'localhost'],
    ['_svc.example.com', '_svc.example.com'],
  ];
  for (const [raw, canonical] of same)
    it(`spells ${raw} as ${canonical}`, () => assert.equal(canonicalHost(raw), canonical));

  const refused: Array<[string, string]> = [
    ['a glibc escape that resolves as another name', 'secret.internal.ex\\097mple.com'],
    ['a percent escape', 'ex%61mple.com'],
    ['an empty label', 'a..example.com'],
    ['a leading empty label', '.example.com'],
    ['an octal IPv4 spelling', '0127.0.0.1'],
    ['a short IPv4 spelling', '127.1'],
    ['a hex IPv4 spelling', '0x7f.0.0.1'],
    ['a label starting with a dash', '-a.example.com'],
    ['a space', 'a b.example.com'],
    ['an IPv6 zone ID', '[fe80::1%eth0]'],
    ['an over-long name', `${`${'a'.repeat(63)}.`.repeat(5)}com`],
    ['an empty string', ''],
    // The URL host parser behind domainToASCII stops at these: "a?b.com" came back as "a".
    ['a query delimiter', 'a?b.com'],
    ['a fragment delimiter', 'a#b.com'],
    ['a path', 'example.com/x'],
    ['a full-width solidus (IDNA maps it to /)', 'example.com\uff0fx'],
  ];
  for (const [what, raw] of refused) it(`refuses ${what}`, () => assert.equal(canonicalHost(raw), undefined));
});

describe('parseAuthority (CONNECT target)', () => {
  it('returns the canonical host and port', () => {
    assert.deepEqual(parseAuthority('API.example.com.:443'), { host: 'api.example.com', port: 443 });
    assert.deepEqual(parseAuthority('[64:ff9b:0:0:0:0:a9fe:a9fe]:80'), { host: '64:ff9b::a9fe:a9fe', port: 80 });
  });
  it('refuses targets a resolver could read differently from the policy', () => {
    for (const target of [
      'ex\\097mple.com:443',
      'ex%61mple.com:443',
      'a..b.com:443',
      'example.com:0',
      'example.com:65536',
      'example.com',
      'user@example.com:443',
    ]) {
      assert.equal(parseAuthority(target), undefined, target);
    }
  });
});

describe('prohibited destinations in every IPv6 spelling', () => {
  for (const ip of [
    '64:ff9b:0:0:0:0:a9fe:a9fe',
    '64:FF9B::A9FE:A9FE',
    '64:ff9b:1::a9fe:a9fe',
    '::127.0.0.1',
    '2002:7f00:1::1',
    '2001:0:4136:e378::1',
    '0:0:0:0:0:ffff:a9fe:a9fe',
  ]) {
    it(`refuses ${ip}`, () => assert.equal(prohibitedDestinations.has(canonicalIp(ip) ?? ip), true));
  }
});
