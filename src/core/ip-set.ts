import { BlockList, isIP } from 'node:net';

export type IpFamily = 'ipv4' | 'ipv6';

/** Parses "a.b.c.d/n", "x::/n" or a bare address (as /32 or /128). Returns undefined if malformed. */
export function parseCidr(input: string): { address: string; prefix: number; family: IpFamily } | undefined {
  const [address, prefixText, extra] = input.trim().split('/');
  if (address === undefined || extra !== undefined) return undefined;
  const version = isIP(address);
  if (version === 0) return undefined;
  const family: IpFamily = version === 4 ? 'ipv4' : 'ipv6';
  const max = version === 4 ? 32 : 128;
  if (prefixText === undefined) return { address, prefix: max, family };
  if (!/^\d{1,3}$/.test(prefixText)) return undefined;
  const prefix = Number(prefixText);
  return prefix <= max ? { address, prefix, family } : undefined;
}

/**
 * The canonical text of an IP address: IPv4 as is, IPv6 compressed and lower-case (RFC 5952, via
 * the WHATWG URL serializer), so `64:ff9b:0:0:0:0:a9fe:a9fe` and `64:ff9b::a9fe:a9fe` are one
 * address. Undefined for anything else, including IPv6 zone IDs.
 */
export function canonicalIp(ip: string): string | undefined {
  const version = isIP(ip);
  if (version === 4) return ip;
  if (version !== 6) return undefined;
  try {
    return new URL(`http://[${ip}]/`).hostname.slice(1, -1);
  } catch {
    return undefined;
  }
}

/**
 * IPv4 addresses hidden inside IPv6 forms (IPv4-mapped ::ffff:0:0/96 and NAT64 64:ff9b::/96) are
 * returned too, so a range check cannot be bypassed by re-spelling an address.
 */
export function embeddedIpv4(ip: string): string | undefined {
  if (isIP(ip) !== 6) return undefined;
  const canonical = canonicalIp(ip) ?? '';
  // The canonical form writes the low 32 bits as hex groups, and compresses zero groups: mapped
  // addresses always keep both (::ffff:0:1), but NAT64 ones may keep one or none
  // (64:ff9b::1 is 0.0.0.1, 64:ff9b:: is 0.0.0.0), which a two-group pattern missed.
  const hex =
    /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(canonical) ??
    /^64:ff9b::(?:(?:([0-9a-f]{1,4}):)?([0-9a-f]{1,4}))?$/.exec(canonical);
  if (!hex) return undefined;
  const high = Number.parseInt(hex[1] ?? '0', 16);
  const low = Number.parseInt(hex[2] ?? '0', 16);
  return `${high >> 8}.${high & 0xff}.${low >> 8}.${low & 0xff}`;
}

/**
 * A set of CIDR ranges. `has` also checks the IPv4 address embedded in mapped/NAT64 IPv6 forms, so
 * a range check cannot be bypassed by re-spelling an address. IPv4 and IPv6 ranges are kept in two
 * lists: node:net's BlockList would check an IPv4 address against IPv6 ranges in its mapped form,
 * so `::/0` in an allow rule's `to.cidrs` would have exempted 127.0.0.1 and 169.254.169.254 from
 * the SSRF guard (found by test/fuzz/ip-set.test.ts, FUZZ_SEED=3). An IPv4 address is matched by
 * IPv4 ranges only.
 */
export class IpSet {
  readonly #v4 = new BlockList();
  readonly #v6 = new BlockList();
  readonly ranges: readonly string[];

  constructor(cidrs: readonly string[]) {
    for (const cidr of cidrs) {
      const parsed = parseCidr(cidr);
      if (!parsed) throw new TypeError(`not a CIDR range: ${cidr}`);
      const list = parsed.family === 'ipv4' ? this.#v4 : this.#v6;
      list.addSubnet(parsed.address, parsed.prefix, parsed.family);
    }
    this.ranges = Object.freeze([...cidrs]);
  }

  has(ip: string): boolean {
    const version = isIP(ip);
    if (version === 4) return this.#v4.check(ip, 'ipv4');
    if (version !== 6) return false;
    if (this.#v6.check(ip, 'ipv6')) return true;
    const v4 = embeddedIpv4(ip);
    return v4 !== undefined && this.#v4.check(v4, 'ipv4');
  }
}
