import { isIP } from 'node:net';
import { domainToASCII } from 'node:url';
import { canonicalIp } from './ip-set.ts';

const LABEL = /^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/;

/**
 * The one spelling of a destination host that policy, the resolver and the audit record all use.
 * IP literals (optionally in brackets) come back in canonical form; names come back as lower-case
 * ASCII (IDNA) without a trailing dot. Anything a resolver might read differently from the policy
 * is refused (undefined): percent escapes and backslashes (glibc decodes `\\DDD`), URL delimiters
 * and other ASCII punctuation, empty or
 * over-long labels, zone IDs, and all-numeric names such as `0127.0.0.1` or `127.1`, which
 * getaddrinfo reads as octal or short IPv4.
 */
export function canonicalHost(raw: string): string | undefined {
  const unbracketed = raw.startsWith('[') && raw.endsWith(']') ? raw.slice(1, -1) : raw;
  if (isIP(unbracketed) !== 0) return canonicalIp(unbracketed);
  if (unbracketed !== raw) return undefined;
  const host = raw.endsWith('.') ? raw.slice(0, -1) : raw;
  // domainToASCII runs the URL host parser, which stops at `/`, `?` and `#` ("a?b.com" is "a"),
  // so ASCII is limited to what a label may hold before IDNA sees it.
  if (host === '' || /[^\w.\-\u0080-\u{10ffff}]|\s/u.test(host)) return undefined;
  const ascii = domainToASCII(host).toLowerCase();
  if (ascii === '' || ascii.length > 253) return undefined;
  const labels = ascii.split('.');
  if (!labels.every((label) => LABEL.test(label))) return undefined;
  if (!/^[a-z]/.test(labels[labels.length - 1] as string)) return undefined;
  return ascii;
}
