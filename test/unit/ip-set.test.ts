import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { embeddedIpv4, IpSet, parseCidr } from '../../src/core/ip-set.ts';
import { prohibitedDestinations } from '../../src/upstream/prohibited-ranges.ts';

describe('IpSet', () => {
  it('matches addresses inside a CIDR and not outside', () => {
    const set = new IpSet(['10.0.0.0/8', '2001:db8::/32']);
    assert.equal(set.has('10.1.2.3'), true);
    assert.equal(set.has('11.0.0.1'), false);
    assert.equal(set.has('2001:db8::1'), true);
    assert.equal(set.has('not-an-ip'), false);
  });

  it('sees IPv4 addresses hidden in IPv4-mapped and NAT64 IPv6 forms', () => {
    const set = new IpSet(['127.0.0.0/8']);
    assert.equal(set.has('::ffff:127.0.0.1'), true);
    assert.equal(set.has('::ffff:7f00:1'), true);
    assert.equal(set.has('64:ff9b::7f00:1'), true);
    assert.equal(embeddedIpv4('64:ff9b::a9fe:a9fe'), '169.254.169.254');
  });

  // Found by test/fuzz/ip-set.test.ts: the canonical form compresses zero high groups of NAT64
  // addresses, and the embedded address was then not seen (so 64:ff9b::1 passed the SSRF guard).
  it('sees the IPv4 address in NAT64 forms whose high 16 bits are zero', () => {
    assert.equal(embeddedIpv4('64:ff9b::a9fe:a9fe'), '169.254.169.254', 'positive control');
    assert.equal(embeddedIpv4('64:ff9b::0.0.3.58'), '0.0.3.58');
    assert.equal(embeddedIpv4('64:ff9b::1'), '0.0.0.1');
    assert.equal(embeddedIpv4('64:ff9b::'), '0.0.0.0');
    assert.equal(embeddedIpv4('::ffff:0.0.0.1'), '0.0.0.1');
    assert.equal(embeddedIpv4('::ffff:33a'), undefined, 'IPv4-compatible ::255.255.3.58, not mapped');
    assert.equal(embeddedIpv4('64:ff9b::1:2:3'), undefined, 'outside 64:ff9b::/96');
    assert.equal(new IpSet(['0.0.0.0/8']).has('64:ff9b::1'), true);
  });

  // Found by test/fuzz/ip-set.test.ts (FUZZ_SEED=3): node:net BlockList checks an IPv4 address
  // against IPv6 ranges in its IPv4-mapped form, so `::/0` in an allow rule matched every IPv4
  // address and exempted 127.0.0.1 from the SSRF guard. IPv4 addresses now match IPv4 ranges only.
  it('never matches an IPv4 address with an IPv6 range (::/0 does not hold 127.0.0.1)', () => {
    assert.equal(new IpSet(['::/0']).has('2001:db8::1'), true, 'positive control: ::/0 holds IPv6');
    assert.equal(new IpSet(['0.0.0.0/0']).has('127.0.0.1'), true, 'positive control: 0.0.0.0/0 holds IPv4');
    assert.equal(new IpSet(['::ffff:0:0/96']).has('127.0.0.1'), false);
    assert.equal(new IpSet(['::/0']).has('127.0.0.1'), false);
    assert.equal(new IpSet(['::/0']).has('64:ff9b::7f00:1'), true, 'an IPv6 address is in ::/0');
    assert.equal(new IpSet(['64:ff9b::/96']).has('127.0.0.1'), false, 'NAT64 ranges do not see plain IPv4');
  });

  it('rejects malformed CIDRs', () => {
    assert.equal(parseCidr('10.0.0.0/33'), undefined);
    assert.equal(parseCidr('10.0.0/8'), undefined);
    assert.equal(parseCidr('::/129'), undefined);
    assert.throws(() => new IpSet(['nonsense']));
  });
});

describe('prohibited destinations (SSRF guard)', () => {
  const prohibited = [
    '127.0.0.1',
    '10.0.0.1',
    '172.16.5.4',
    '192.168.1.1',
    '169.254.169.254',
    '100.64.0.1',
    '0.0.0.0',
    '224.0.0.1',
    '255.255.255.255',
    '::1',
    '::',
    'fd00::1',
    'fe80::1',
    'ff02::1',
    '::ffff:169.254.169.254',
    '64:ff9b::a9fe:a9fe',
    '::ffff:10.0.0.1',
    '64:ff9b::1',
    '64:ff9b::0.0.0.0',
  ];
  for (const ip of prohibited) it(`refuses ${ip}`, () => assert.equal(prohibitedDestinations.has(ip), true));
  for (const ip of ['93.184.216.34', '8.8.8.8', '2606:4700::1111', '172.32.0.1', '100.128.0.1']) {
    it(`allows public ${ip}`, () => assert.equal(prohibitedDestinations.has(ip), false));
  }
});
