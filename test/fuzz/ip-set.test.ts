import assert from 'node:assert/strict';
import { isIP } from 'node:net';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { canonicalIp, embeddedIpv4, IpSet, parseCidr } from '../../src/core/ip-set.ts';
import { fuzzOptions } from './fuzz-options.ts';

/** Reference parsing to a big integer, written independently of node:net and the URL parser. */
function ipv4Bits(ip: string): bigint {
  return ip.split('.').reduce((acc, octet) => (acc << 8n) | BigInt(Number(octet)), 0n);
}

function ipv6Bits(ip: string): bigint {
  let text = ip;
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted) {
    const v4 = ipv4Bits(dotted[1] as string);
    text = `${text.slice(0, dotted.index)}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const [head, tail] = text.split('::') as [string, string | undefined];
  const groups = (s: string) => (s === '' ? [] : s.split(':'));
  const left = groups(head);
  const right = tail === undefined ? [] : groups(tail);
  const all = tail === undefined ? left : [...left, ...Array(8 - left.length - right.length).fill('0'), ...right];
  return all.reduce((acc, g) => (acc << 16n) | BigInt(Number.parseInt(g, 16)), 0n);
}

const bits = (ip: string) => (isIP(ip) === 4 ? ipv4Bits(ip) : ipv6Bits(ip));
const width = (ip: string) => (isIP(ip) === 4 ? 32 : 128);

function inCidr(ip: string, cidr: string): boolean {
  const [base, prefixText] = cidr.split('/') as [string, string];
  if (isIP(base) !== isIP(ip)) return false;
  const shift = BigInt(width(ip) - Number(prefixText));
  return bits(ip) >> shift === bits(base) >> shift;
}

/**
 * What IpSet promises: the address itself, or the IPv4 address an IPv6 form carries, is in a
 * range; and an IPv4 address is one address with its IPv4-mapped form, so IPv6 ranges see it as
 * ::ffff:a.b.c.d (node:net BlockList does this; seed 3 found it, see test/unit/ip-set.test.ts).
 */
function referenceHas(cidrs: readonly string[], ip: string): boolean {
  const v4 = isIP(ip) === 6 ? referenceEmbedded(ip) : ip;
  const spellings = v4 === undefined ? [ip] : [ip, v4, `::ffff:${v4}`];
  return cidrs.some((c) => spellings.some((s) => inCidr(s, c)));
}

function referenceEmbedded(ip: string): string | undefined {
  const value = ipv6Bits(ip);
  const high = value >> 32n;
  if (high !== 0xffffn && high !== 0x64ff9b0000000000000000n) return undefined;
  const low = Number(value & 0xffffffffn);
  return [low >>> 24, (low >>> 16) & 255, (low >>> 8) & 255, low & 255].join('.');
}

function formatBits(value: bigint, v6: boolean): string {
  if (!v6) return [24n, 16n, 8n, 0n].map((s) => Number((value >> s) & 255n)).join('.');
  return Array.from({ length: 8 }, (_, i) => ((value >> BigInt(112 - 16 * i)) & 0xffffn).toString(16)).join(':');
}

// An address and a range near it (the address with a few low or high bits flipped), so both
// matches and misses are common; IPv6 also in mapped and NAT64 forms of an IPv4 address.
const v6Address = fc.oneof(
  fc.ipV6(),
  fc.ipV4().map((v4) => `::ffff:${v4}`),
  fc.ipV4().map((v4) => `64:ff9b::${v4}`),
  fc.ipV4().map((v4) => formatBits((0x64ff9b0000000000000000n << 32n) | ipv4Bits(v4), true)),
);
const addressAndRange = fc
  .oneof(fc.ipV4(), v6Address)
  .chain((ip) =>
    fc.tuple(
      fc.constant(ip),
      fc.integer({ min: 0, max: width(ip) }),
      fc.integer({ min: 0, max: width(ip) - 1 }),
      fc.boolean(),
    ),
  )
  .map(([ip, prefix, flip, doFlip]) => {
    const base = doFlip ? bits(ip) ^ (1n << BigInt(flip)) : bits(ip);
    return { ip, cidr: `${formatBits(base, isIP(ip) === 6)}/${prefix}` };
  });

describe('fuzz: CIDR matching', () => {
  it('IpSet agrees with a reference bit comparison (embedded IPv4 forms included)', () => {
    fc.assert(
      fc.property(addressAndRange, fc.ipV4(), ({ ip, cidr }, v4) => {
        const v4Cidr = `${v4}/${Number(bits(v4) & 31n)}`;
        for (const cidrs of [[cidr], [cidr, v4Cidr]]) {
          assert.equal(new IpSet(cidrs).has(ip), referenceHas(cidrs, ip), `${ip} in ${cidrs.join(',')}`);
        }
      }),
      fuzzOptions(4000),
    );
  });

  it('an address is always in its own /32 or /128 and in /0 of its family, in any spelling', () => {
    fc.assert(
      fc.property(fc.oneof(fc.ipV4(), v6Address), (ip) => {
        const canonical = canonicalIp(ip) as string;
        assert.equal(bits(canonical), bits(ip), `${ip} → ${canonical}`);
        assert.equal(new IpSet([`${ip}/${width(ip)}`]).has(canonical), true);
        assert.equal(new IpSet([`${canonical}/${width(ip)}`]).has(ip), true);
        assert.equal(new IpSet([isIP(ip) === 4 ? '0.0.0.0/0' : '::/0']).has(ip), true);
        assert.deepEqual(parseCidr(`${ip}/${width(ip)}`)?.prefix, width(ip));
      }),
      fuzzOptions(3000),
    );
  });

  it('finds the IPv4 address inside mapped and NAT64 forms like the reference does', () => {
    fc.assert(
      fc.property(v6Address, (ip) => assert.equal(embeddedIpv4(ip), referenceEmbedded(ip), ip)),
      fuzzOptions(3000),
    );
  });
});
