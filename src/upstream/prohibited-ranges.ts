import { IpSet } from '../core/ip-set.ts';

/**
 * Destinations a workload must not reach through the gateway unless the allowing rule names the
 * IP in `to.cidrs` (SSRF guard): loopback, RFC 1918, link-local (cloud metadata 169.254.169.254),
 * CGNAT, "this network", benchmarking, multicast, reserved/broadcast, unspecified, IPv6 loopback,
 * ULA, link-local, site-local, multicast, documentation, and the IPv6 transition forms that carry
 * an IPv4 address (IPv4-compatible, local NAT64, Teredo, 6to4). IPv4-mapped and well-known-prefix
 * NAT64 spellings are checked against the IPv4 ranges by IpSet, in any spelling.
 */
export const PROHIBITED_DESTINATION_RANGES: readonly string[] = Object.freeze([
  '0.0.0.0/8',
  '10.0.0.0/8',
  '100.64.0.0/10',
  '127.0.0.0/8',
  '169.254.0.0/16',
  '172.16.0.0/12',
  '192.0.0.0/24',
  '192.168.0.0/16',
  '198.18.0.0/15',
  '224.0.0.0/4',
  '240.0.0.0/4',
  '::/128',
  '::1/128',
  '::/96', // IPv4-compatible (deprecated) spellings of IPv4 addresses
  '64:ff9b:1::/48', // local-use NAT64 prefix (RFC 8215)
  '2001::/32', // Teredo: embeds an IPv4 server and client
  '2002::/16', // 6to4: embeds an IPv4 address
  'fc00::/7',
  'fe80::/10',
  'fec0::/10',
  'ff00::/8',
  '2001:db8::/32',
]);

export const prohibitedDestinations = new IpSet(PROHIBITED_DESTINATION_RANGES);
