import { createPrivateKey, type KeyObject, type X509Certificate } from 'node:crypto';
import { GatewayError, isGatewayError } from '../../core/errors.ts';
import { parseSpiffeId } from '../../identity/spiffe-id.ts';
import { trustBundleFromCertificates } from '../../identity/trust-bundle.ts';
import { verifyPeerSvid } from '../../identity/verify-svid.ts';
import type { IdentityMaterial } from '../identity-material.ts';
import { splitDerCertificates } from './der-certificates.ts';
import type { X509BundlesResponse, X509SvidResponse } from './workload-api-proto.ts';

// Bounds on what one agent message can make the gateway parse (SPIRE sends a handful).
const MAX_CHAIN = 16;
const MAX_BUNDLE = 64;
const MAX_TRUST_DOMAINS = 256;

/** What one trust domain's bundle map holds: CA certificates by trust domain name. */
export type BundleMap = ReadonlyMap<string, readonly X509Certificate[]>;

/** The default (first) SVID of an X509SVIDResponse, checked and converted, with the bundles it carried. */
export interface SvidUpdate {
  readonly spiffeId: string;
  readonly chain: readonly X509Certificate[];
  readonly key: KeyObject;
  /** Its own trust domain's bundle plus the federated ones. */
  readonly bundles: BundleMap;
}

function invalid(message: string, cause?: unknown): GatewayError {
  return new GatewayError('EGW_WORKLOAD_API_INVALID', message, cause === undefined ? {} : { cause });
}

/** "spiffe://example.org" (the spec's key form) or a bare "example.org" → "example.org". */
function bundleTrustDomain(key: string): string {
  try {
    const id = parseSpiffeId(key.startsWith('spiffe://') ? key : `spiffe://${key}`);
    if (id.segments.length > 0) throw invalid(`bundle key ${JSON.stringify(key)} has a path`);
    return id.trustDomain;
  } catch (error) {
    throw isGatewayError(error, 'EGW_WORKLOAD_API_INVALID')
      ? error
      : invalid(`bundle key ${JSON.stringify(key.slice(0, 200))} is not a trust domain`, error);
  }
}

function parseBundleMap(entries: Readonly<Record<string, Buffer>>, what: string, into: Map<string, X509Certificate[]>) {
  const keys = Object.keys(entries);
  if (keys.length + into.size > MAX_TRUST_DOMAINS) throw invalid(`${what}: more than ${MAX_TRUST_DOMAINS} bundles`);
  for (const key of keys) {
    const trustDomain = bundleTrustDomain(key);
    // "spiffe://a" and "a" are one trust domain; two bundles for it must not be silently merged (SPIFFE bundle maps).
    if (into.has(trustDomain)) throw invalid(`${what}: trust domain ${trustDomain} has more than one bundle`);
    into.set(trustDomain, splitDerCertificates(entries[key] as Buffer, `${what} ${key}`, MAX_BUNDLE));
  }
}

/**
 * Checks an X509SVIDResponse and takes its default SVID (the first, SPIFFE Workload API §5.3).
 * Refuses an empty list, a SPIFFE ID outside `trustDomain`, a leaf whose URI SAN is not that ID,
 * undecodable DER and a key that does not match the leaf. Chain-to-bundle is checked on assembly.
 */
export function parseSvidResponse(response: X509SvidResponse, trustDomain: string): SvidUpdate {
  const svid = response.svids[0];
  if (!svid) throw invalid('the X509SVIDResponse holds no SVID');
  let id: ReturnType<typeof parseSpiffeId>;
  try {
    id = parseSpiffeId(svid.spiffe_id);
  } catch (error) {
    throw invalid(`the SVID's spiffe_id ${JSON.stringify(svid.spiffe_id.slice(0, 200))} is invalid`, error);
  }
  if (id.trustDomain !== trustDomain)
    throw invalid(`the SVID ${id.uri} is not in the configured trust domain ${trustDomain} (identity.trustDomain)`);
  const chain = splitDerCertificates(svid.x509_svid, `SVID ${id.uri} x509_svid`, MAX_CHAIN);
  const leaf = chain[0] as X509Certificate;
  const sans = (leaf.subjectAltName ?? '').split(', ').filter((s) => s.startsWith('URI:'));
  if (sans.length !== 1 || sans[0] !== `URI:${id.uri}`)
    throw invalid(`the SVID leaf's URI SAN (${sans.join(' ') || 'none'}) is not ${id.uri}`);
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: svid.x509_svid_key, format: 'der', type: 'pkcs8' });
  } catch (cause) {
    throw invalid(`SVID ${id.uri}: x509_svid_key is not an unencrypted PKCS#8 DER key`, cause);
  }
  if (!leaf.checkPrivateKey(key)) throw invalid(`SVID ${id.uri}: x509_svid_key does not match the certificate`);
  const bundles = new Map<string, X509Certificate[]>();
  bundles.set(trustDomain, splitDerCertificates(svid.bundle, `SVID ${id.uri} bundle`, MAX_BUNDLE));
  parseBundleMap(response.federated_bundles, 'federated_bundles', bundles);
  return Object.freeze({ spiffeId: id.uri, chain: Object.freeze(chain), key, bundles });
}

/** Checks an X509BundlesResponse: at least the configured trust domain's bundle, all DER valid. */
export function parseBundlesResponse(response: X509BundlesResponse, trustDomain: string): BundleMap {
  const bundles = new Map<string, X509Certificate[]>();
  parseBundleMap(response.bundles, 'X509BundlesResponse bundles', bundles);
  if (!bundles.has(trustDomain))
    throw invalid(`the X509BundlesResponse holds no bundle for the configured trust domain ${trustDomain}`);
  return bundles;
}

const pem = (certs: readonly X509Certificate[]) => certs.map((c) => c.toString().trim()).join('\n');

/**
 * Joins the latest SVID with the latest bundles into identity material, after proving the SVID
 * chains to its trust domain's bundle now (a CA rotation that drops the SVID's issuer is refused,
 * not served). Every problem throws EGW_WORKLOAD_API_INVALID with the reason.
 */
export function assembleMaterial(
  svid: SvidUpdate,
  bundles: BundleMap,
  trustDomain: string,
  source: string,
): IdentityMaterial {
  const own = bundles.get(trustDomain);
  if (!own) throw invalid(`no bundle for the configured trust domain ${trustDomain}`);
  try {
    verifyPeerSvid(svid.chain, trustBundleFromCertificates(trustDomain, own, `${source} bundle ${trustDomain}`));
  } catch (error) {
    throw invalid(
      `SVID ${svid.spiffeId} does not verify against the ${trustDomain} bundle: ${(error as Error).message}`,
      error,
    );
  }
  const federatedBundles = new Map([...bundles].filter(([domain]) => domain !== trustDomain));
  return Object.freeze({
    certPem: pem(svid.chain),
    keyPem: svid.key.export({ type: 'pkcs8', format: 'pem' }) as string,
    anchorsPem: pem(own),
    source,
    federatedBundles,
  });
}
