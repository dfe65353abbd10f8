import { GatewayError } from '../core/errors.ts';

const MAX_ID_BYTES = 2048;
const MAX_TRUST_DOMAIN_BYTES = 255;
const TRUST_DOMAIN_CHARS = /^[a-z0-9._-]+$/;
const PATH_SEGMENT_CHARS = /^[a-zA-Z0-9._-]+$/;

/**
 * A SPIFFE ID that passed the syntax rules of the SPIFFE-ID standard. It can only be built
 * through `parseSpiffeId`, so holding one is proof of validity ("parse, don't validate").
 */
export interface SpiffeId {
  readonly uri: string;
  readonly trustDomain: string;
  /** Path with its leading slash, e.g. `/ns/bookinfo/sa/productpage`. */
  readonly path: string;
  readonly segments: readonly string[];
  /** Set only when the path has Istio's exact `/ns/<namespace>/sa/<service-account>` shape. */
  readonly namespace?: string;
  readonly serviceAccount?: string;
}

function invalid(input: string, why: string): GatewayError {
  return new GatewayError(
    'EGW_IDENTITY_SPIFFE_ID_INVALID',
    `invalid SPIFFE ID ${JSON.stringify(input.slice(0, 200))}: ${why}`,
    {
      details: { reason: why },
    },
  );
}

/** Validates a trust domain name (lowercase letters, digits, dots, dashes, underscores). */
export function parseTrustDomain(input: string): string {
  if (input.length === 0) throw invalid(input, 'trust domain is empty');
  if (Buffer.byteLength(input) > MAX_TRUST_DOMAIN_BYTES) throw invalid(input, 'trust domain is longer than 255 bytes');
  if (!TRUST_DOMAIN_CHARS.test(input)) {
    throw invalid(
      input,
      'trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores',
    );
  }
  return input;
}

/**
 * Parses `spiffe://<trust-domain>/<path>` by hand rather than with WHATWG URL, because URL
 * normalises away exactly what the standard forbids (dot segments, upper case, percent escapes).
 */
export function parseSpiffeId(input: string): SpiffeId {
  if (Buffer.byteLength(input) > MAX_ID_BYTES) throw invalid(input, 'longer than 2048 bytes');
  const scheme = 'spiffe://';
  if (input.slice(0, scheme.length).toLowerCase() !== scheme) throw invalid(input, 'scheme is not spiffe');
  const rest = input.slice(scheme.length);
  if (rest.includes('?')) throw invalid(input, 'query is not allowed');
  if (rest.includes('#')) throw invalid(input, 'fragment is not allowed');
  if (rest.includes('%')) throw invalid(input, 'percent-encoding is not allowed');
  const slash = rest.indexOf('/');
  const authority = slash === -1 ? rest : rest.slice(0, slash);
  const path = slash === -1 ? '' : rest.slice(slash);
  if (authority.includes('@')) throw invalid(input, 'userinfo is not allowed');
  if (authority.includes(':')) throw invalid(input, 'port is not allowed');
  const trustDomain = parseTrustDomain(authority);
  const segments: string[] = [];
  if (path !== '') {
    const parts = path.slice(1).split('/');
    for (const part of parts) {
      if (part === '') throw invalid(input, 'path cannot contain empty segments or a trailing slash');
      if (part === '.' || part === '..') throw invalid(input, 'path cannot contain dot segments');
      if (!PATH_SEGMENT_CHARS.test(part)) {
        throw invalid(input, 'path segment characters are limited to letters, numbers, dots, dashes, and underscores');
      }
      segments.push(part);
    }
  }
  const istioShape = segments.length === 4 && segments[0] === 'ns' && segments[2] === 'sa';
  return Object.freeze({
    uri: `spiffe://${trustDomain}${path}`,
    trustDomain,
    path,
    segments: Object.freeze(segments),
    ...(istioShape ? { namespace: segments[1], serviceAccount: segments[3] } : {}),
  });
}
