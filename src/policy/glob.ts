import { domainToASCII } from 'node:url';

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

/** Normalises a host name for comparison: IDNA to punycode, lower case, no trailing dot. */
export function normalizeHost(host: string): string {
  const trimmed = host.endsWith('.') ? host.slice(0, -1) : host;
  if (trimmed.startsWith('[') && trimmed.endsWith(']')) return trimmed.slice(1, -1).toLowerCase();
  const ascii = domainToASCII(trimmed);
  return (ascii === '' ? trimmed : ascii).toLowerCase();
}

export function compileHostGlob(pattern: string): SegmentGlob {
  const labels = pattern.toLowerCase().split('.');
  return labels.map((label) => (label === '*' || label === '**' ? label : normalizeHost(label)));
}

export function hostMatches(glob: SegmentGlob, host: string): boolean {
  return matchSegments(glob, normalizeHost(host).split('.'));
}

/** Compiles `spiffe://td/ns/*\/sa/**`; the trust domain part is matched literally. */
export function compileSpiffeGlob(pattern: string): SegmentGlob {
  const rest = pattern.slice('spiffe://'.length);
  return rest.split('/');
}

export function spiffeIdMatches(glob: SegmentGlob, uri: string): boolean {
  return matchSegments(glob, uri.slice('spiffe://'.length).split('/'));
}
