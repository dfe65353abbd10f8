import { X509Certificate } from 'node:crypto';
import { GatewayError } from '../core/errors.ts';

/** A trust bundle in the SPIFFE bundle format (SPIFFE_Trust_Domain_and_Bundle.md §4), X.509 part only. */
export interface SpiffeBundle {
  /** The CA certificates of the `x509-svid` keys, in file order. */
  readonly certificates: readonly X509Certificate[];
  readonly sequence?: number;
  /** Seconds; how often the publisher suggests re-reading the bundle. */
  readonly refreshHintSeconds?: number;
}

// The file is read before anything is trusted, so everything it can make us hold is bounded.
const MAX_BUNDLE_BYTES = 1024 * 1024;
const MAX_KEYS = 256;
/** Base64 of a 48 KiB certificate: far above any CA certificate, far below the file bound. */
const MAX_X5C_CHARS = 65_536;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
/** JWK public-key members that, when present, must describe the certificate's own key. */
const KEY_MEMBERS = ['crv', 'n', 'e', 'x', 'y'] as const;

function malformed(source: string, where: string, why: string): GatewayError {
  return new GatewayError('EGW_PKI_FILE', `${source}: SPIFFE bundle${where}: ${why}`);
}

/** True when the text is meant as a SPIFFE bundle (JSON) rather than PEM. */
export function looksLikeSpiffeBundle(text: string): boolean {
  return text.trimStart().startsWith('{');
}

function optionalCount(value: unknown, source: string, key: string): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0)
    throw malformed(source, '', `${key} must be a non-negative integer, got ${JSON.stringify(value)?.slice(0, 40)}`);
  return value;
}

/** The certificate of one `x509-svid` key; `where` names the key for messages (` keys[3]`). */
function x509Key(key: Record<string, unknown>, source: string, where: string): X509Certificate {
  if (typeof key.kty !== 'string') throw malformed(source, where, 'kty is missing');
  // X509-SVID §6: an X.509 authority is identified by its certificate, never by a key ID.
  if (key.kid !== undefined) throw malformed(source, where, 'kid must not be set on an x509-svid key');
  const x5c = key.x5c;
  if (!Array.isArray(x5c) || x5c.length !== 1)
    throw malformed(source, where, 'x5c must hold exactly one base64 DER certificate');
  const b64 = x5c[0];
  if (typeof b64 !== 'string' || b64.length > MAX_X5C_CHARS || !BASE64.test(b64))
    throw malformed(source, `${where}.x5c[0]`, 'not a standard base64 string of at most 64 KiB');
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(Buffer.from(b64, 'base64'));
  } catch (cause) {
    throw new GatewayError('EGW_PKI_FILE', `${source}: SPIFFE bundle${where}.x5c[0]: not a DER certificate`, {
      cause,
    });
  }
  // The JWK's key members and the certificate must describe one key, or the file is lying about one of them.
  let own: Record<string, unknown>;
  try {
    // The certificate parses lazily: a broken SubjectPublicKeyInfo only throws here (found by the fuzz test).
    own = cert.publicKey.export({ format: 'jwk' }) as Record<string, unknown>;
  } catch (cause) {
    throw new GatewayError('EGW_PKI_FILE', `${source}: SPIFFE bundle${where}.x5c[0]: the public key cannot be read`, {
      cause,
    });
  }
  if (own.kty !== key.kty)
    throw malformed(source, where, `kty ${JSON.stringify(key.kty).slice(0, 20)} but the certificate key is ${own.kty}`);
  for (const member of KEY_MEMBERS) {
    if (key[member] !== undefined && key[member] !== own[member])
      throw malformed(source, where, `${member} does not match the certificate's public key`);
  }
  return cert;
}

/**
 * Parses a SPIFFE bundle (an RFC 7517 JWK Set with `spiffe_sequence` and `spiffe_refresh_hint`).
 * Keys with `use: "x509-svid"` must be well formed and become CA certificates; `jwt-svid` keys,
 * and keys of a `use` this gateway does not know, are skipped as the standard says. A broken
 * x509-svid key is refused (not skipped): an operator's file that silently lost an anchor would
 * refuse a trust domain's clients with no hint why. Throws EGW_PKI_FILE naming the file and key index.
 */
export function parseSpiffeBundle(text: string, source: string): SpiffeBundle {
  if (Buffer.byteLength(text) > MAX_BUNDLE_BYTES) throw malformed(source, '', `larger than ${MAX_BUNDLE_BYTES} bytes`);
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (error) {
    throw malformed(source, '', `not JSON (${(error as Error).message.slice(0, 120)})`);
  }
  if (typeof document !== 'object' || document === null || Array.isArray(document))
    throw malformed(source, '', 'expected a JSON object with "keys"');
  const set = document as Record<string, unknown>;
  if (!Array.isArray(set.keys)) throw malformed(source, '', '"keys" must be an array');
  if (set.keys.length > MAX_KEYS) throw malformed(source, '', `more than ${MAX_KEYS} keys`);
  const sequence = optionalCount(set.spiffe_sequence, source, 'spiffe_sequence');
  const refreshHintSeconds = optionalCount(set.spiffe_refresh_hint, source, 'spiffe_refresh_hint');
  const certificates: X509Certificate[] = [];
  set.keys.forEach((key: unknown, index) => {
    const where = ` keys[${index}]`;
    if (typeof key !== 'object' || key === null || Array.isArray(key)) throw malformed(source, where, 'not an object');
    const use = (key as Record<string, unknown>).use;
    if (use !== undefined && typeof use !== 'string') throw malformed(source, where, 'use must be a string');
    if (use === 'x509-svid') certificates.push(x509Key(key as Record<string, unknown>, source, where));
  });
  return Object.freeze({
    certificates: Object.freeze(certificates),
    ...(sequence === undefined ? {} : { sequence }),
    ...(refreshHintSeconds === undefined ? {} : { refreshHintSeconds }),
  });
}

/** Writes certificates as a SPIFFE bundle, one `x509-svid` key each (tests, and `pki` tooling). */
export function formatSpiffeBundle(
  certificates: readonly X509Certificate[],
  options: { sequence?: number; refreshHintSeconds?: number } = {},
): string {
  const keys = certificates.map((cert) => ({
    ...(cert.publicKey.export({ format: 'jwk' }) as Record<string, unknown>),
    use: 'x509-svid',
    x5c: [cert.raw.toString('base64')],
  }));
  return `${JSON.stringify(
    {
      ...(options.sequence === undefined ? {} : { spiffe_sequence: options.sequence }),
      ...(options.refreshHintSeconds === undefined ? {} : { spiffe_refresh_hint: options.refreshHintSeconds }),
      keys,
    },
    null,
    2,
  )}\n`;
}
