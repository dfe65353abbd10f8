import { createHash } from 'node:crypto';
import type * as Asn1js from 'asn1js';
import type * as Pkijs from 'pkijs';
import { GatewayError } from '../core/errors.ts';
import type { CertificateFacts } from '../pki/certificate-facts.ts';

// pkijs and asn1js are loaded by the first CRL, not at start: a gateway without CRLs never needs them.
let libs: { readonly pkijs: typeof Pkijs; readonly asn1js: typeof Asn1js } | undefined;
async function loadLibs(): Promise<NonNullable<typeof libs>> {
  libs ??= { pkijs: await import('pkijs'), asn1js: await import('asn1js') };
  return libs;
}
/** For the synchronous helpers, which only ever run on a CRL that crlRecord has parsed. */
function pkijsLoaded(): typeof Pkijs {
  if (!libs) throw new Error('pkijs is used before the first CRL loaded it');
  return libs.pkijs;
}

/** One CRL as the verifier uses it: who issued it, when it is current, and what it revokes. */
export interface CrlRecord {
  /** File path, with `#n` for the n-th CRL of a file holding several. */
  readonly source: string;
  /** The issuer's subject (the anchor's when it was found, else the CRL's issuer name). */
  readonly issuerName: string;
  /** The bundle certificate whose key verified the CRL's signature; absent when none did. */
  readonly issuer: CertificateFacts | undefined;
  readonly thisUpdate: Date;
  readonly nextUpdate: Date | undefined;
  /** Revoked serial numbers (upper-case hex, no leading zeros) → revocation date and reason. */
  readonly revoked: ReadonlyMap<string, { readonly at: Date; readonly reason: string | undefined }>;
  /** Why this CRL can never be used (no issuer in the bundle, bad signature, unsupported form). */
  readonly defect: string | undefined;
}

/** Enough for ~400 000 revoked entries (five ASN.1 nodes each, more with extensions). */
const CRL_MAX_NODES = 2_000_000;
const CRL_MAX_BYTES = 32 * 1024 * 1024;

/** CRL extensions whose meaning the verifier honours or may ignore (RFC 5280 §5.2). */
const KNOWN_CRL_EXTENSIONS = new Set(['2.5.29.20', '2.5.29.35', '2.5.29.18']);
/** Entry extensions: reasonCode, invalidityDate. certificateIssuer (indirect CRLs) is not supported. */
const KNOWN_ENTRY_EXTENSIONS = new Set(['2.5.29.21', '2.5.29.24']);
const REASON_OID = '2.5.29.21';
const REASONS = [
  'unspecified',
  'keyCompromise',
  'cACompromise',
  'affiliationChanged',
  'superseded',
  'cessationOfOperation',
  'certificateHold',
  'unused',
  'removeFromCRL',
  'privilegeWithdrawn',
  'aACompromise',
];
const SHORT_NAMES: Readonly<Record<string, string>> = {
  '2.5.4.3': 'CN',
  '2.5.4.6': 'C',
  '2.5.4.7': 'L',
  '2.5.4.8': 'ST',
  '2.5.4.10': 'O',
  '2.5.4.11': 'OU',
};

/** Upper-case hex without leading zeros: the one form both Node's and pkijs's serials reduce to. */
export function normalSerial(hex: string): string {
  return hex.toUpperCase().replace(/^0+(?=.)/, '');
}

/** The DER CRLs of a file: PEM `X509 CRL` blocks, or the whole file as one DER CRL. */
export function crlBlocks(bytes: Buffer, source: string): Buffer[] {
  const text = bytes.toString('latin1');
  if (!text.includes('-----BEGIN')) return [bytes];
  const blocks = [...text.matchAll(/-----BEGIN X509 CRL-----([\s\S]*?)-----END X509 CRL-----/g)].map((m) =>
    Buffer.from((m[1] as string).replace(/\s+/g, ''), 'base64'),
  );
  if (blocks.length === 0) throw new GatewayError('EGW_PKI_FILE', `${source}: no "X509 CRL" PEM block`);
  return blocks;
}

function issuerText(crl: Pkijs.CertificateRevocationList): string {
  return crl.issuer.typesAndValues
    .map((tv) => `${SHORT_NAMES[tv.type] ?? tv.type}=${String(tv.value.valueBlock.value)}`)
    .join(', ');
}

function revokedEntries(crl: Pkijs.CertificateRevocationList): { map: CrlRecord['revoked']; defect?: string } {
  const map = new Map<string, { at: Date; reason: string | undefined }>();
  for (const entry of crl.revokedCertificates ?? []) {
    const extensions = entry.crlEntryExtensions?.extensions ?? [];
    const unknown = extensions.find((ext) => ext.critical && !KNOWN_ENTRY_EXTENSIONS.has(ext.extnID));
    if (unknown)
      return { map, defect: `an entry has critical extension ${unknown.extnID} (indirect CRLs are not supported)` };
    const reasonExt = extensions.find((ext) => ext.extnID === REASON_OID);
    const code = (reasonExt?.parsedValue as { valueBlock?: { valueDec?: number } } | undefined)?.valueBlock?.valueDec;
    const serial = normalSerial(Buffer.from(entry.userCertificate.valueBlock.valueHexView).toString('hex'));
    map.set(serial, { at: entry.revocationDate.value, reason: code === undefined ? undefined : REASONS[code] });
  }
  return { map };
}

// Names are compared as DER, not as text: two encodings of one DN must not split or merge issuers.
const pkijsCertificates = new WeakMap<CertificateFacts, Pkijs.Certificate>();
function pkijsCertificate(facts: CertificateFacts): Pkijs.Certificate {
  let cert = pkijsCertificates.get(facts);
  if (!cert) {
    cert = pkijsLoaded().Certificate.fromBER(facts.node.raw);
    pkijsCertificates.set(facts, cert);
  }
  return cert;
}

/** Finds the bundle certificate that signed the CRL; the signature check is pkijs's (WebCrypto). */
async function findIssuer(
  crl: Pkijs.CertificateRevocationList,
  candidates: readonly CertificateFacts[],
): Promise<{ issuer?: CertificateFacts; name?: string; defect?: string }> {
  const named = candidates.filter((c) => pkijsCertificate(c).subject.isEqual(crl.issuer));
  if (named.length === 0) return { defect: 'its issuer is not a certificate of identity.trustAnchors' };
  for (const candidate of named) {
    const ok = await crl.verify({ issuerCertificate: pkijsCertificate(candidate) }).catch(() => false);
    if (ok) return { issuer: candidate, name: candidate.subject };
  }
  const name = named[0]?.subject;
  return { name, defect: `its signature does not verify with the key of "${name}"` };
}

/** Parses one DER CRL and checks its signature against the bundle. A parse failure is a config error. */
export async function crlRecord(
  der: Buffer,
  source: string,
  candidates: readonly CertificateFacts[],
): Promise<CrlRecord> {
  const { pkijs, asn1js } = await loadLibs();
  let crl: Pkijs.CertificateRevocationList;
  try {
    // asn1js stops at 10 000 nodes by default, about 2 000 CRL entries: a real CA's CRL failed to
    // load. The file is the operator's, not a client's, so the bounds are set for CRL sizes.
    const asn1 = asn1js.fromBER(new Uint8Array(der), { maxNodes: CRL_MAX_NODES, maxContentLength: CRL_MAX_BYTES });
    if (asn1.offset === -1) throw new Error(asn1.result.error);
    crl = new pkijs.CertificateRevocationList({ schema: asn1.result });
  } catch (cause) {
    throw new GatewayError('EGW_PKI_FILE', `${source}: not a DER or PEM CRL (${(cause as Error).message})`, { cause });
  }
  const entries = revokedEntries(crl);
  const critical = (crl.crlExtensions?.extensions ?? []).find(
    (ext) => ext.critical && !KNOWN_CRL_EXTENSIONS.has(ext.extnID),
  );
  const found = await findIssuer(crl, candidates);
  const defect =
    found.defect ??
    entries.defect ??
    (critical
      ? `it has critical extension ${critical.extnID} (delta and partitioned CRLs are not supported)`
      : undefined) ??
    (crl.nextUpdate ? undefined : 'it has no nextUpdate');
  return Object.freeze({
    source,
    issuerName: found.name ?? issuerText(crl),
    issuer: found.issuer,
    thisUpdate: crl.thisUpdate.value,
    nextUpdate: crl.nextUpdate?.value,
    revoked: entries.map,
    defect,
  });
}

/** SHA-256 of a certificate's SubjectPublicKeyInfo: an issuer is its name and its key. */
const spkiHashes = new WeakMap<CertificateFacts, string>();
export function spkiHash(facts: CertificateFacts): string {
  let hash = spkiHashes.get(facts);
  if (hash === undefined) {
    hash = createHash('sha256')
      .update(facts.node.publicKey.export({ type: 'spki', format: 'der' }))
      .digest('hex');
    spkiHashes.set(facts, hash);
  }
  return hash;
}
