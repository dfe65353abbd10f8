import type { X509Certificate } from 'node:crypto';
import { GatewayError } from '../core/errors.ts';
import { type CertificateFacts, certificateFacts, ExtendedKeyUsageOid, KeyUsage } from '../pki/certificate-facts.ts';
import { parseSpiffeId, type SpiffeId } from './spiffe-id.ts';
import type { TrustBundle } from './trust-bundle.ts';
import { verifyChain } from './verify-chain.ts';

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
 * Verifies a peer's presented chain (leaf first, as TLS sends it) against the bundle and returns
 * its identity. Throws GatewayError with an EGW_IDENTITY_* code on any failure.
 */
export function verifyPeerSvid(
  presented: readonly X509Certificate[],
  bundle: TrustBundle,
  now: Date = new Date(),
): PeerIdentity {
  const [leafCert, ...rest] = presented;
  if (!leafCert) throw new GatewayError('EGW_IDENTITY_NO_CERT');
  const leaf = certificateFactsCached(leafCert);
  const path = verifyChain(leaf, rest.map(certificateFactsCached), bundle, now);
  const spiffeId = verifySvidLeaf(leaf, bundle.trustDomain);
  return Object.freeze({ spiffeId, leaf, path: Object.freeze(path) });
}

// A workload reconnects with the same SVID for hours, and intermediates repeat on every
// connection. The ASN.1 decode is the largest per-handshake cost (docs/benchmarks.md), and its
// result depends only on the DER, so it is cached by SHA-256 fingerprint. Everything that depends
// on time or trust (validity, signatures, anchors) is still checked on every connection.
// Bounded, oldest first out, so a client cycling through certificates cannot grow it.
const factsCache = new Map<string, CertificateFacts>();
const FACTS_CACHE_LIMIT = 4096;

function certificateFactsCached(cert: X509Certificate): CertificateFacts {
  const key = cert.fingerprint256;
  const hit = factsCache.get(key);
  if (hit) return hit;
  const facts = certificateFacts(cert);
  if (factsCache.size >= FACTS_CACHE_LIMIT) factsCache.delete(factsCache.keys().next().value as string);
  factsCache.set(key, facts);
  return facts;
}
