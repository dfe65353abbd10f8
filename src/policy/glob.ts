import { isIP } from 'node:net';
import { canonicalHost } from '../core/host-name.ts';
import { parseCidr } from '../core/ip-set.ts';

/**
 * Purpose-built wildcards instead of regular expressions (fewer surprises, no escaping bugs).
 * In both kinds `*` stands for exactly one segment and `**` for one or more; a segment is a
 * SPIFFE path segment or a DNS label. `*.example.com` therefore does not match `example.com`
 * nor `a.b.example.com`; `**.example.com` matches both subdomains but still not the apex.
 */
export type SegmentGlob = readonly string[];

function matchSegments(pattern: SegmentGlob, value: readonly string[], p = 0, v = 0): boolean {
  if (p === pattern.length) return v === value.length;
  const token = pattern[p];
  if (token === '**') {
    for (let end = v + 1; end <= value.length; end++) {
      if (value[end - 1] === '') return false; // no empty segment inside a `**` span
      if (matchSegments(pattern, value, p + 1, end)) return true;
    }
    return false;
  }
  if (v === value.length || value[v] === '') return false;
  return (token === '*' || token === value[v]) && matchSegments(pattern, value, p + 1, v + 1);
}

const WILDCARD = /^\*\*?$/;
const NUMERIC = /^(\d+|0x[0-9a-f]*)$/i;
// Stands in for each wildcard while the pattern goes through the request canonicaliser; a
// one-letter label is valid in every position, so it never changes what the rest means.
const PROBE = 'x';

/** A compiled host glob, or why the pattern was refused (a rule that can never match is an error). */
export type HostGlobResult = { readonly glob: SegmentGlob } | { readonly problem: string };

/** `203.0.113.*` → `203.0.113.0/24` when the wildcards are whole trailing octets. */
function suggestedCidr(labels: readonly string[]): string {
  const fixed = labels.indexOf('*');
  const octets = fixed === -1 ? labels : labels.slice(0, fixed);
  const exact = labels.length === 4 && octets.every((l) => /^\d{1,3}$/.test(l) && Number(l) <= 255);
  if (!exact || !labels.slice(octets.length).every((l) => l === '*')) return '<address>/<prefix>';
  return `${[...octets, ...Array(4 - octets.length).fill('0')].join('.')}/${octets.length * 8}`;
}

/** Patterns written as IP addresses or ranges: host globs only ever match names. */
function ipPatternProblem(pattern: string, labels: readonly string[]): string | undefined {
  const unbracketed = pattern.startsWith('[') && pattern.endsWith(']') ? pattern.slice(1, -1) : pattern;
  const hint = 'host patterns match host names only; addresses belong in to.cidrs, which matches the IP dialled';
  const version = isIP(unbracketed);
  if (version !== 0)
    return `${JSON.stringify(pattern)} is an IP address; ${hint} (write "${unbracketed}/${version === 4 ? 32 : 128}")`;
  if (parseCidr(pattern)) return `${JSON.stringify(pattern)} is an IP range; ${hint}`;
  if (pattern.includes(':')) return `${JSON.stringify(pattern)} looks like an IPv6 address or range; ${hint}`;
  if (labels.every((l) => WILDCARD.test(l) || NUMERIC.test(l)) && labels.some((l) => NUMERIC.test(l)))
    return `${JSON.stringify(pattern)} looks like an IPv4 address or range; ${hint} (write "${suggestedCidr(labels)}")`;
  return undefined;
}

/**
 * Compiles a host glob by sending it through the same canonicaliser as request hosts
 * (core/host-name.ts), wildcards replaced by a probe label, so a pattern means exactly the
 * hosts a request can name. Refuses IP literals and ranges, and anything that can never match.
 */
export function compileHostGlob(pattern: string): HostGlobResult {
  const written = pattern.split('.');
  // One trailing dot is the root label, as in requests; canonicalHost sees it unchanged below.
  const labels = written.length > 1 && written[written.length - 1] === '' ? written.slice(0, -1) : written;
  const ipProblem = ipPatternProblem(pattern, labels);
  if (ipProblem) return { problem: ipProblem };
  const canonical = canonicalHost(written.map((l) => (WILDCARD.test(l) ? PROBE : l)).join('.'));
  if (canonical === undefined)
    return {
      problem: `${JSON.stringify(pattern)} is not a host name or host glob (a valid host name, \`*\` or \`**\` only as whole labels); it could never match`,
    };
  const canonicalLabels = canonical.split('.');
  if (!labels.some((l) => WILDCARD.test(l))) return { glob: Object.freeze(canonicalLabels) };
  if (canonicalLabels.length !== labels.length)
    return { problem: `${JSON.stringify(pattern)} has a character IDNA reads as a dot; write the dots as "."` };
  const glob = canonicalLabels.map((l, i) => (WILDCARD.test(labels[i] as string) ? (labels[i] as string) : l));
  return { glob: Object.freeze(glob) };
}

/** Matches a host already in canonical form (core/host-name.ts). IP literals never match a host glob. */
export function canonicalHostMatches(glob: SegmentGlob, canonical: string): boolean {
  return isIP(canonical) === 0 && matchSegments(glob, canonical.split('.'));
}

/** Canonicalises `host` first; a host with no canonical spelling matches nothing. */
export function hostMatches(glob: SegmentGlob, host: string): boolean {
  const canonical = canonicalHost(host);
  return canonical !== undefined && canonicalHostMatches(glob, canonical);
}

/** Compiles `spiffe://td/ns/*\/sa/**`; the trust domain part is matched literally. */
export function compileSpiffeGlob(pattern: string): SegmentGlob {
  const rest = pattern.slice('spiffe://'.length);
  return rest.split('/');
}

export function spiffeIdMatches(glob: SegmentGlob, uri: string): boolean {
  return matchSegments(glob, uri.slice('spiffe://'.length).split('/'));
}
