import { createRequire } from 'node:module';
import type * as Pkijs from 'pkijs';
import { GatewayError } from '../core/errors.ts';
import type { CertificateFacts } from '../pki/certificate-facts.ts';

// pkijs (with its ASN.1 stack) is only needed for a CA that carries nameConstraints, which mesh CAs
// rarely do: it is loaded synchronously on first use (require of an ES module, Node >= 22.12),
// not at start. A Node without require(esm) loads it up front instead.
const requireEsm = createRequire(import.meta.url);
let pkijs: typeof Pkijs | undefined = process.features.require_module ? undefined : await import('pkijs');
const lib = (): typeof Pkijs => {
  pkijs ??= requireEsm('pkijs') as typeof Pkijs;
  return pkijs;
};

/**
 * The extensions this verifier acts on. RFC 5280 §4.2: a certificate with a critical extension
 * the verifier does not process must be refused; policy extensions (certificatePolicies,
 * policyMappings, policyConstraints, inhibitAnyPolicy) are not processed, so they are refused
 * when critical rather than silently ignored.
 */
const PROCESSED_EXTENSIONS: Readonly<Record<string, string>> = {
  '2.5.29.14': 'subjectKeyIdentifier',
  '2.5.29.15': 'keyUsage',
  '2.5.29.17': 'subjectAltName',
  '2.5.29.19': 'basicConstraints',
  '2.5.29.30': 'nameConstraints',
  '2.5.29.35': 'authorityKeyIdentifier',
  '2.5.29.37': 'extendedKeyUsage',
};

/** Refuses a certificate carrying a critical extension the verifier does not process. */
export function checkCriticalExtensions(cert: CertificateFacts, role: string): void {
  const unknown = cert.criticalExtensions.filter((oid) => !(oid in PROCESSED_EXTENSIONS));
  if (unknown.length === 0) return;
  throw new GatewayError(
    'EGW_IDENTITY_CRITICAL_EXTENSION',
    `${role} "${cert.subject || cert.serialNumber}" has critical extension ${unknown.join(', ')}, which this verifier does not process`,
    { details: { oids: unknown } },
  );
}

const DNS_NAME = 2;
const URI = 6;
/** GeneralName CHOICE tags, RFC 5280 §4.2.1.6. */
const GENERAL_NAME_TYPES = [
  'otherName',
  'rfc822Name',
  'dNSName',
  'x400Address',
  'directoryName',
  'ediPartyName',
  'uniformResourceIdentifier',
  'iPAddress',
  'registeredID',
];

/** Host-shaped constraints by GeneralName form, lower-cased. */
interface Subtrees {
  readonly dns: readonly string[];
  readonly uri: readonly string[];
}

interface Constraints {
  readonly permitted: Subtrees | undefined;
  readonly excluded: Subtrees | undefined;
}

// Anchors and cached intermediates are the same objects on every connection: parse once.
const parsedConstraints = new WeakMap<CertificateFacts, Constraints>();

function subtreesOf(ca: CertificateFacts, list: Pkijs.GeneralSubtree[] | undefined): Subtrees | undefined {
  if (!list || list.length === 0) return undefined;
  const dns: string[] = [];
  const uri: string[] = [];
  for (const subtree of list) {
    const { type, value } = subtree.base;
    const minimum = typeof subtree.minimum === 'number' ? subtree.minimum : subtree.minimum.valueBlock.valueDec;
    // RFC 5280: minimum is 0 and maximum absent for every name form; anything else is not enforced.
    const bounded = subtree.maximum !== undefined || minimum !== 0;
    if ((type !== DNS_NAME && type !== URI) || typeof value !== 'string' || bounded) {
      throw new GatewayError(
        'EGW_IDENTITY_NAME_CONSTRAINTS_UNSUPPORTED',
        `CA "${ca.subject}" has a ${GENERAL_NAME_TYPES[type] ?? `type-${type}`} name constraint; this verifier enforces only dNSName and URI constraints and refuses CAs with others`,
      );
    }
    (type === DNS_NAME ? dns : uri).push(value.toLowerCase());
  }
  return { dns, uri };
}

function constraintsOf(ca: CertificateFacts): Constraints | undefined {
  if (!ca.nameConstraints) return undefined;
  const hit = parsedConstraints.get(ca);
  if (hit) return hit;
  let parsed: Pkijs.NameConstraints;
  try {
    parsed = lib().NameConstraints.fromBER(ca.nameConstraints);
  } catch (cause) {
    throw new GatewayError('EGW_IDENTITY_MALFORMED', `CA "${ca.subject}" has an unparsable nameConstraints`, {
      cause,
    });
  }
  const constraints = {
    permitted: subtreesOf(ca, parsed.permittedSubtrees),
    excluded: subtreesOf(ca, parsed.excludedSubtrees),
  };
  parsedConstraints.set(ca, constraints);
  return constraints;
}

/** Refuses, at load, an anchor whose nameConstraints this verifier could never enforce. */
export function checkConstraintsEnforceable(ca: CertificateFacts): void {
  constraintsOf(ca);
}

/** RFC 5280 §4.2.1.10 dNSName: the constraint plus any labels added on the left. */
function dnsWithin(name: string, constraint: string): boolean {
  if (constraint === '') return true;
  const base = constraint.startsWith('.') ? constraint.slice(1) : constraint;
  return name === base ? !constraint.startsWith('.') : name.endsWith(`.${base}`);
}

/** RFC 5280 §4.2.1.10 URI: the host exactly, or with a leading period any host below it. */
function uriHostWithin(host: string, constraint: string): boolean {
  return constraint.startsWith('.') ? host.endsWith(constraint) : host === constraint;
}

/** The host of a URI SAN; for a SPIFFE ID that is its trust domain. */
function uriHost(uri: string): string {
  const match = /^[a-z][a-z0-9+.-]*:\/\/([^/?#]*)/i.exec(uri);
  const authority = (match?.[1] ?? '').toLowerCase();
  return authority.slice(authority.lastIndexOf('@') + 1).replace(/:\d*$/, '');
}

function check(ca: CertificateFacts, cert: CertificateFacts, { permitted, excluded }: Constraints): void {
  const names = [
    ...cert.dnsNames.map((name) => ({ kind: 'dns' as const, shown: name, value: name.toLowerCase() })),
    ...cert.uris.map((uri) => ({ kind: 'uri' as const, shown: uri, value: uriHost(uri) })),
  ];
  for (const name of names) {
    const within = name.kind === 'dns' ? dnsWithin : uriHostWithin;
    const allowed = permitted?.[name.kind] ?? [];
    const barred = excluded?.[name.kind] ?? [];
    const outside = allowed.length > 0 && !allowed.some((c) => within(name.value, c));
    const inside = barred.find((c) => within(name.value, c));
    if (outside || inside !== undefined) {
      throw new GatewayError(
        'EGW_IDENTITY_NAME_CONSTRAINTS',
        `${name.shown} in "${cert.subject || cert.serialNumber}" is ${inside !== undefined ? `excluded by "${inside}"` : `outside the permitted ${allowed.join(', ')}`} in the nameConstraints of CA "${ca.subject}"`,
      );
    }
  }
}

/**
 * Applies every CA's nameConstraints (anchor included) to the names of each certificate below it
 * in a validated path (leaf first, anchor last). For a SPIFFE ID the URI host is the trust domain.
 */
export function checkNameConstraints(path: readonly CertificateFacts[]): void {
  for (let i = 1; i < path.length; i++) {
    const ca = path[i] as CertificateFacts;
    const constraints = constraintsOf(ca);
    if (!constraints) continue;
    for (const cert of path.slice(0, i)) check(ca, cert, constraints);
  }
}
