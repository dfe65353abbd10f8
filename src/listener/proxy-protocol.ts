import { isIP } from 'node:net';
import { canonicalIp } from '../core/ip-set.ts';

/**
 * PROXY protocol version 2 (haproxy's proxy-protocol.txt, section 2.2): the binary header an L4
 * load balancer puts in front of a TCP stream to say who the client was. Pure encode/decode; the
 * socket side is proxy-protocol-reader.ts.
 */
export const PROXY_V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
/** Signature, version/command, family/protocol, 16-bit length. */
export const PROXY_V2_FIXED_BYTES = 16;
/**
 * TLV bytes accepted after the address block. The format allows 65535 minus the addresses; a peer
 * that is not yet trusted must not make us buffer that much, and real load balancers send a few
 * dozen bytes (AWS NLB: a VPC endpoint id; haproxy: unique id, authority, SSL facts).
 */
export const MAX_PROXY_V2_TLV_BYTES = 536;

/** TLV types (proxy-protocol.txt 2.2.1–2.2.7) and the gateway's own, from the custom range 0xE0–0xEF. */
export const PP2_TYPE_AUTHORITY = 0x02;
export const PP2_TYPE_UNIQUE_ID = 0x05;
/** The caller's SPIFFE ID (UTF-8 URI), sent to tcp-mode upstreams. */
export const PP2_TYPE_EGW_SPIFFE_ID = 0xe0;

export interface ProxyAddress {
  readonly ip: string;
  readonly port: number;
}

export interface ProxyTlv {
  readonly type: number;
  readonly value: Buffer;
}

export interface ProxyHeader {
  /** `local`: the balancer's own connection (health check); the socket's addresses stand. */
  readonly command: 'local' | 'proxy';
  /** Absent for LOCAL, AF_UNSPEC and AF_UNIX: then the socket's own addresses are the ones to use. */
  readonly source?: ProxyAddress;
  readonly destination?: ProxyAddress;
  readonly tlvs: readonly ProxyTlv[];
}

export type ProxyParse =
  | { readonly status: 'incomplete'; readonly need: number }
  | { readonly status: 'invalid'; readonly reason: string }
  | { readonly status: 'ok'; readonly header: ProxyHeader; readonly length: number };

const ADDRESS_BYTES: Readonly<Record<number, number>> = { 0: 0, 1: 12, 2: 36, 3: 216 };

/**
 * Reads a v2 header at the start of `data`. `incomplete` says how many bytes the whole header
 * needs so far; it is never more than 16 + 216 + maxTlvBytes, because the length is checked as
 * soon as the fixed part is in, before waiting for the rest.
 */
export function parseProxyV2(data: Buffer, maxTlvBytes = MAX_PROXY_V2_TLV_BYTES): ProxyParse {
  const signatureBytes = Math.min(data.length, PROXY_V2_SIGNATURE.length);
  if (!data.subarray(0, signatureBytes).equals(PROXY_V2_SIGNATURE.subarray(0, signatureBytes)))
    return { status: 'invalid', reason: 'no PROXY v2 signature' };
  if (data.length < PROXY_V2_FIXED_BYTES) return { status: 'incomplete', need: PROXY_V2_FIXED_BYTES };
  const versionCommand = data[12] ?? 0;
  if (versionCommand >> 4 !== 0x2) return { status: 'invalid', reason: `version ${versionCommand >> 4} is not 2` };
  const command = versionCommand & 0x0f;
  if (command > 1) return { status: 'invalid', reason: `unknown command ${command}` };
  const family = (data[13] ?? 0) >> 4;
  const transport = (data[13] ?? 0) & 0x0f;
  const addressBytes = ADDRESS_BYTES[family];
  if (addressBytes === undefined) return { status: 'invalid', reason: `unknown address family ${family}` };
  // A datagram header in front of a TCP stream is a lie; LOCAL may carry anything (it is ignored).
  if (command === 1 && transport > 1) return { status: 'invalid', reason: `transport ${transport} is not a stream` };
  const length = data.readUInt16BE(14);
  if (command === 1 && length < addressBytes)
    return { status: 'invalid', reason: `length ${length} is shorter than the address block` };
  if (length > addressBytes + maxTlvBytes)
    return { status: 'invalid', reason: `length ${length} exceeds the ${maxTlvBytes}-byte TLV limit` };
  const total = PROXY_V2_FIXED_BYTES + length;
  if (data.length < total) return { status: 'incomplete', need: total };
  const body = data.subarray(PROXY_V2_FIXED_BYTES, total);
  if (command === 0) return { status: 'ok', header: { command: 'local', tlvs: [] }, length: total };
  const tlvs = parseTlvs(body.subarray(addressBytes));
  if (!tlvs) return { status: 'invalid', reason: 'a TLV runs past the end of the header' };
  const header: ProxyHeader =
    family === 0x1 || family === 0x2
      ? { command: 'proxy', ...addressesOf(body, family === 0x1 ? 4 : 16), tlvs }
      : { command: 'proxy', tlvs };
  return { status: 'ok', header, length: total };
}

function parseTlvs(data: Buffer): ProxyTlv[] | undefined {
  const tlvs: ProxyTlv[] = [];
  let offset = 0;
  while (offset < data.length) {
    if (offset + 3 > data.length) return undefined;
    const type = data[offset] ?? 0;
    const length = data.readUInt16BE(offset + 1);
    if (offset + 3 + length > data.length) return undefined;
    tlvs.push({ type, value: Buffer.from(data.subarray(offset + 3, offset + 3 + length)) });
    offset += 3 + length;
  }
  return tlvs;
}

function addressesOf(body: Buffer, size: 4 | 16): { source: ProxyAddress; destination: ProxyAddress } {
  const text = (bytes: Buffer) => (size === 4 ? [...bytes].join('.') : ipv6Text(bytes));
  return {
    source: { ip: text(body.subarray(0, size)), port: body.readUInt16BE(2 * size) },
    destination: { ip: text(body.subarray(size, 2 * size)), port: body.readUInt16BE(2 * size + 2) },
  };
}

function ipv6Text(bytes: Buffer): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i).toString(16));
  const joined = groups.join(':');
  return canonicalIp(joined) ?? joined;
}

/** An IPv4 address, or the IPv4 one an IPv4-mapped IPv6 address carries (Node's dual-stack sockets). */
function asIpv4(ip: string): string | undefined {
  if (isIP(ip) === 4) return ip;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  return mapped?.[1] && isIP(mapped[1]) === 4 ? mapped[1] : undefined;
}

function ipv4Bytes(ip: string): Buffer {
  return Buffer.from(ip.split('.').map(Number));
}

function ipv6Bytes(ip: string): Buffer {
  const v4 = asIpv4(ip);
  if (v4) return Buffer.concat([Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]), ipv4Bytes(v4)]);
  const canonical = canonicalIp(ip);
  if (!canonical || isIP(canonical) !== 6) throw new TypeError(`not an IP address: ${ip}`);
  // The URL serializer writes every IPv6 address as hex groups with at most one "::".
  const [head = '', tail] = canonical.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = [...headGroups, ...Array(8 - headGroups.length - tailGroups.length).fill('0'), ...tailGroups];
  const bytes = Buffer.alloc(16);
  groups.forEach((group, i) => {
    bytes.writeUInt16BE(Number.parseInt(group, 16), 2 * i);
  });
  return bytes;
}

/**
 * Builds a PROXY v2 header. Both addresses go as IPv4 when both are IPv4 (or IPv4-mapped),
 * otherwise both as IPv6 (an IPv4 one mapped), since the format has one family for the pair.
 */
export function encodeProxyV2(header: {
  readonly source: ProxyAddress;
  readonly destination: ProxyAddress;
  readonly tlvs?: readonly ProxyTlv[];
}): Buffer {
  const v4 = [asIpv4(header.source.ip), asIpv4(header.destination.ip)];
  const inet = v4[0] !== undefined && v4[1] !== undefined;
  const ips = inet
    ? [ipv4Bytes(v4[0] as string), ipv4Bytes(v4[1] as string)]
    : [ipv6Bytes(header.source.ip), ipv6Bytes(header.destination.ip)];
  const ports = Buffer.alloc(4);
  ports.writeUInt16BE(header.source.port, 0);
  ports.writeUInt16BE(header.destination.port, 2);
  const tlvs = (header.tlvs ?? []).map((tlv) => {
    const head = Buffer.from([tlv.type, 0, 0]);
    head.writeUInt16BE(tlv.value.length, 1);
    return Buffer.concat([head, tlv.value]);
  });
  const body = Buffer.concat([...ips, ports, ...tlvs]);
  if (body.length > 0xffff) throw new RangeError('PROXY v2 header longer than 65535 bytes');
  const fixed = Buffer.alloc(4);
  fixed[0] = 0x21; // version 2, PROXY
  fixed[1] = inet ? 0x11 : 0x21; // AF_INET or AF_INET6, STREAM
  fixed.writeUInt16BE(body.length, 2);
  return Buffer.concat([PROXY_V2_SIGNATURE, fixed, body]);
}
