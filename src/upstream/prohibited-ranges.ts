import { IpSet } from '../core/ip-set.ts';

/**
 * Destinations a workload must not reach through the gateway unless the allowing rule names the
 * IP in `to.cidrs` (SSRF guard): loopback, RFC 1918, link-local (cloud metadata 169.254.169.254),
 * CGNAT, "this network", benchmarking, multicast, reserved/broadcast, unspecified, IPv6 loopback,
 * ULA, link-local, site-local, multicast, documentation. IPv4-mapped and NAT64 spellings of any of
 * these are caught by IpSet.
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
  'fc00::/7',
  'fe80::/10',
  'fec0::/10',
  'ff00::/8',
  '2001:db8::/32',
]);

export const prohibitedDestinations = new IpSet(PROHIBITED_DESTINATION_RANGES);
