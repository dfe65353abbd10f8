/**
 * The intermediates a client sent with a chain that validated, kept for when it resumes.
 * OpenSSL stores only the peer's leaf in a session (ticket), not the chain: on a resumed session
 * `getPeerX509Certificate()` is the leaf with no issuer linked. The identity stage still verifies
 * the whole path against the current anchors on every connection, so it needs the intermediates
 * again; these are untrusted candidates like any presented certificate, not a verdict.
 * Keyed by the leaf's SHA-256 fingerprint; only filled after validation (an anonymous client
 * cannot grow it) and bounded in entries and bytes, least recently used out first.
 */
const MAX_ENTRIES = 4096;
const MAX_BYTES = 8 * 1024 * 1024;
const chains = new Map<string, readonly Buffer[]>();
let bytes = 0;

const sizeOf = (chain: readonly Buffer[]) => chain.reduce((sum, der) => sum + der.length, 0);

/** Remembers `intermediates` (as sent after the leaf) for the leaf with this fingerprint. */
export function rememberChain(leafFingerprint256: string, intermediates: readonly Buffer[]): void {
  const old = chains.get(leafFingerprint256);
  if (old) {
    chains.delete(leafFingerprint256);
    bytes -= sizeOf(old);
  }
  const size = sizeOf(intermediates);
  while (chains.size > 0 && (chains.size >= MAX_ENTRIES || bytes + size > MAX_BYTES)) {
    const [key, oldest] = chains.entries().next().value as [string, readonly Buffer[]];
    chains.delete(key);
    bytes -= sizeOf(oldest);
  }
  chains.set(leafFingerprint256, intermediates);
  bytes += size;
}

/** The intermediates remembered for this leaf, or none. */
export function rememberedChain(leafFingerprint256: string): readonly Buffer[] {
  const hit = chains.get(leafFingerprint256);
  if (!hit) return [];
  chains.delete(leafFingerprint256);
  chains.set(leafFingerprint256, hit);
  return hit;
}

/** For tests and /stats. */
export function rememberedChainUsage(): { entries: number; bytes: number } {
  return { entries: chains.size, bytes };
}
