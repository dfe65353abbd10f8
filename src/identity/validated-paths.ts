import { hash } from 'node:crypto';
import type { CertificateFacts } from '../pki/certificate-facts.ts';
import type { PresentedCertificate } from './chain-limits.ts';
import type { TrustBundle } from './trust-bundle.ts';

/**
 * Identities already proven by exactly these certificates against exactly this bundle. A workload
 * reconnects with the same SVID and intermediates for hours; the key policy, the path search and
 * its signature checks give the same answer for the same DER and the same anchors every time, so
 * the answer is kept. What depends on time is not: the caller re-checks every certificate's
 * validity on each hit. A reload or anchor rotation builds a new TrustBundle object, whose cache
 * starts empty (WeakMap), so nothing validated under old anchors is reused.
 * Only chains that validated enter it, bounded per bundle and least recently used out first.
 */
const MAX_ENTRIES = 4096;
const byBundle = new WeakMap<TrustBundle, Map<string, Validated>>();

export interface Validated {
  readonly path: readonly CertificateFacts[];
}

/** The cache key: SHA-256 of every presented certificate, in order (one-shot `hash`: no Hash object per certificate). */
export function chainKey(sent: readonly PresentedCertificate[]): string {
  return sent.map((cert) => (Buffer.isBuffer(cert) ? hash('sha256', cert, 'hex') : cert.fingerprint256)).join('/');
}

export function lookupValidated<T extends Validated>(bundle: TrustBundle, key: string): T | undefined {
  const cache = byBundle.get(bundle);
  const hit = cache?.get(key);
  if (!cache || !hit) return undefined;
  cache.delete(key);
  cache.set(key, hit);
  return hit as T;
}

export function storeValidated(bundle: TrustBundle, key: string, value: Validated): void {
  let cache = byBundle.get(bundle);
  if (!cache) {
    cache = new Map();
    byBundle.set(bundle, cache);
  }
  if (cache.size >= MAX_ENTRIES) cache.delete(cache.keys().next().value as string);
  cache.set(key, value);
}
