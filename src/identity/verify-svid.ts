import { X509Certificate } from 'node:crypto';
import { GatewayError } from '../core/errors.ts';
import { type CertificateFacts, certificateFacts, ExtendedKeyUsageOid, KeyUsage } from '../pki/certificate-facts.ts';
import { checkChainSize, DEFAULT_CHAIN_LIMITS, type PresentedCertificate } from './chain-limits.ts';
import { verificationCost } from './key-policy.ts';
import { checkRevocation } from './revocation.ts';
import { parseSpiffeId, type SpiffeId } from './spiffe-id.ts';
import { bundleForDomain, type TrustBundle } from './trust-bundle.ts';
import { type VerifyStats, verifyChain } from './verify-chain.ts';

/** The authenticated caller: a SPIFFE ID and the facts of the certificate that proved it. */
export interface PeerIdentity {
  readonly spiffeId: SpiffeId;
  readonly leaf: CertificateFacts;
  /** Validated path, leaf first, trust anchor last. */
  readonly path: readonly CertificateFacts[];
}

/**
 * X.509-SVID leaf rules (SPIFFE X509-SVID §2, §4, §5): not a CA, KeyUsage present with
 * digitalSignature and without keyCertSign/cRLSign, clientAuth if EKU is present, exactly one URI
 * SAN holding a SPIFFE ID with a non-root path in the configured trust domain.
 */
export function verifySvidLeaf(leaf: CertificateFacts, trustDomain: string): SpiffeId {
  if (leaf.isCa) throw new GatewayError('EGW_IDENTITY_LEAF_IS_CA', 'leaf certificate has basicConstraints cA=true');
  if (leaf.keyUsage === undefined)
    throw new GatewayError('EGW_IDENTITY_LEAF_KEY_USAGE', 'leaf certificate has no KeyUsage extension');
  if ((leaf.keyUsage & KeyUsage.digitalSignature) === 0) {
    throw new GatewayError('EGW_IDENTITY_LEAF_KEY_USAGE', 'leaf KeyUsage lacks digitalSignature');
  }
  if ((leaf.keyUsage & (KeyUsage.keyCertSign | KeyUsage.cRLSign)) !== 0) {
    throw new GatewayError('EGW_IDENTITY_LEAF_KEY_USAGE', 'leaf KeyUsage has keyCertSign or cRLSign');
  }
  if (leaf.extendedKeyUsage !== undefined && !leaf.extendedKeyUsage.includes(ExtendedKeyUsageOid.clientAuth)) {
    throw new GatewayError('EGW_IDENTITY_LEAF_KEY_USAGE', 'leaf ExtendedKeyUsage lacks clientAuth');
  }
  if (leaf.uris.length !== 1) {
    throw new GatewayError(
      'EGW_IDENTITY_URI_SAN_COUNT',
      `leaf has ${leaf.uris.length} URI SANs; an X.509-SVID has exactly one`,
    );
  }
  const id = parseSpiffeId(leaf.uris[0] as string);
  if (id.segments.length === 0)
    throw new GatewayError('EGW_IDENTITY_SPIFFE_ID_INVALID', `${id.uri}: an SVID needs a non-root path`);
  if (id.trustDomain !== trustDomain) {
    throw new GatewayError('EGW_IDENTITY_TRUST_DOMAIN', `${id.uri} is not in trust domain ${trustDomain}`);
  }
  return id;
}

/**
 * The bundle the leaf's chain must end in: the one of the trust domain its URI SAN names. The SAN
 * is only read here, not trusted; choosing before the path search is what keeps a partner CA from
 * vouching for a cluster identity. A leaf without one well-formed SPIFFE ID, or of a trust domain
 * that is not configured, is checked against the gateway's own bundle, so it is refused exactly as
 * with a single trust domain (chain untrusted, or not in the trust domain).
 */
function bundleOfLeaf(leaf: CertificateFacts, bundle: TrustBundle): TrustBundle {
  if (!bundle.federated || leaf.uris.length !== 1) return bundle;
  try {
    return bundleForDomain(bundle, parseSpiffeId(leaf.uris[0] as string).trustDomain) ?? bundle;
  } catch {
    return bundle;
  }
}

/**
 * Verifies a peer's presented chain (leaf first, as TLS sends it) against the bundle of its trust
 * domain and returns its identity. Throws GatewayError with an EGW_IDENTITY_* code on any failure.
 * Order matters: sizes (DER lengths only), then every key against the key policy, then our ASN.1
 * parse, then the budgeted path search, the SVID leaf rules, and revocation against the CRLs; only
 * a chain that passed everything is remembered.
 */
export function verifyPeerSvid(
  sent: readonly PresentedCertificate[],
  bundle: TrustBundle,
  now: Date = new Date(),
  stats?: VerifyStats,
): PeerIdentity {
  if (sent.length === 0) throw new GatewayError('EGW_IDENTITY_NO_CERT');
  checkChainSize(sent, bundle.limits ?? DEFAULT_CHAIN_LIMITS);
  const presented = sent.map(toCertificate);
  const [leafCert, ...rest] = presented as [X509Certificate, ...X509Certificate[]];
  for (const [index, cert] of presented.entries()) {
    verificationCost(cert.publicKey, index === 0 ? 'the leaf' : `certificate #${index + 1}`);
  }
  const leaf = factsOf(leafCert);
  const domain = bundleOfLeaf(leaf, bundle);
  const path = verifyChain(leaf, rest.map(factsOf), domain, now, { stats });
  const spiffeId = verifySvidLeaf(leaf, domain.trustDomain);
  checkRevocation(path, bundle.revocation, now);
  for (const cert of path.slice(0, -1)) remember(cert);
  return Object.freeze({ spiffeId, leaf, path: Object.freeze(path) });
}

// A workload reconnects with the same SVID for hours, and intermediates repeat on every
// connection. The ASN.1 decode is the largest per-handshake cost (docs/benchmarks.md), and its
// result depends only on the DER, so it is cached by SHA-256 fingerprint. Everything that depends
// on time or trust (validity, signatures, anchors) is still checked on every connection.
// Only certificates of chains that validated enter it (an anonymous client cannot fill it), and
// it is bounded in bytes of DER as well as entries, least recently used out first.
const factsCache = new Map<string, CertificateFacts>();
const FACTS_CACHE_ENTRIES = 4096;
const FACTS_CACHE_BYTES = 8 * 1024 * 1024;
let factsCacheBytes = 0;

function toCertificate(cert: PresentedCertificate): X509Certificate {
  if (!Buffer.isBuffer(cert)) return cert;
  try {
    return new X509Certificate(cert);
  } catch (cause) {
    throw new GatewayError('EGW_IDENTITY_MALFORMED', 'certificate DER cannot be parsed', { cause });
  }
}

function factsOf(cert: X509Certificate): CertificateFacts {
  const hit = factsCache.get(cert.fingerprint256);
  if (!hit) return certificateFacts(cert);
  factsCache.delete(cert.fingerprint256);
  factsCache.set(cert.fingerprint256, hit);
  return hit;
}

function remember(facts: CertificateFacts): void {
  const key = facts.node.fingerprint256;
  if (factsCache.has(key)) return;
  const bytes = facts.node.raw.length;
  while (
    factsCache.size > 0 &&
    (factsCache.size >= FACTS_CACHE_ENTRIES || factsCacheBytes + bytes > FACTS_CACHE_BYTES)
  ) {
    const [oldestKey, oldest] = factsCache.entries().next().value as [string, CertificateFacts];
    factsCache.delete(oldestKey);
    factsCacheBytes -= oldest.node.raw.length;
  }
  factsCache.set(key, facts);
  factsCacheBytes += bytes;
}

/** For tests and /stats: what the facts cache holds. */
export function factsCacheUsage(): { entries: number; bytes: number } {
  return { entries: factsCache.size, bytes: factsCacheBytes };
}
