import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { GatewayError } from '../core/errors.ts';
import type { CertificateFacts } from '../pki/certificate-facts.ts';
import { type CrlRecord, crlBlocks, crlRecord, normalSerial, spkiHash } from './revocation-list.ts';
import type { TrustBundle } from './trust-bundle.ts';

/** The CRLs of one trust bundle (identity.crls) and whether every issuer must have one. */
export interface RevocationState {
  readonly crls: readonly CrlRecord[];
  /** identity.crlRequired: a chain whose issuer has no current, valid CRL is refused. */
  readonly required: boolean;
}

/** How one configured CRL stands right now, for /readyz and egw_crl_status. */
export interface CrlStatus {
  readonly source: string;
  readonly issuer: string;
  /** 'valid', or why the CRL is not used: 'defective' (see reason), 'stale' or 'not-yet-valid'. */
  readonly status: 'valid' | 'defective' | 'stale' | 'not-yet-valid';
  readonly reason: string | undefined;
  readonly nextUpdate: Date | undefined;
}

// Parsing is the cost of a CRL (pkijs/asn1js: ~0.15 ms per entry here, on the event loop), and
// every reload, for any key, rebuilds the state. A CRL whose bytes and candidate issuers did not
// change is not parsed again; only the previous load's records are kept.
let previousLoad = new Map<string, CrlRecord>();

function cacheKey(der: Buffer, bundle: TrustBundle): string {
  const hash = createHash('sha256').update(der);
  for (const anchor of bundle.anchors) hash.update(anchor.sha256);
  return hash.digest('hex');
}

/**
 * Reads and signature-checks the CRL files against the bundle's anchors. A file that cannot be
 * read or parsed fails the load (like an anchor file); a CRL that parses but cannot be trusted
 * (no issuer in the bundle, bad signature) loads as defective, shows in /readyz, and counts as no
 * CRL for its issuer, so with `required` it refuses that issuer's chains instead of failing start.
 */
export async function loadRevocation(
  paths: readonly string[],
  bundle: TrustBundle,
  required: boolean,
): Promise<RevocationState> {
  const crls: CrlRecord[] = [];
  const thisLoad = new Map<string, CrlRecord>();
  for (const path of paths) {
    let bytes: Buffer;
    try {
      bytes = readFileSync(path);
    } catch (cause) {
      throw new GatewayError(
        'EGW_PKI_FILE',
        `cannot read ${path} (${(cause as NodeJS.ErrnoException).code ?? (cause as Error).message})`,
        { cause },
      );
    }
    const blocks = crlBlocks(bytes, path);
    for (const [index, der] of blocks.entries()) {
      const source = blocks.length === 1 ? path : `${path}#${index + 1}`;
      const key = cacheKey(der, bundle);
      const known = previousLoad.get(key) ?? thisLoad.get(key);
      const record = known?.source === source ? known : await crlRecord(der, source, bundle.anchors);
      thisLoad.set(key, record);
      crls.push(record);
    }
  }
  previousLoad = thisLoad;
  return Object.freeze({ crls: Object.freeze(crls), required });
}

/** The bundle with its CRLs attached; the verifier reads them from there (one state, one reload). */
export function withRevocation(bundle: TrustBundle, revocation: RevocationState): TrustBundle {
  return Object.freeze({ ...bundle, revocation });
}

export function crlStatus(crl: CrlRecord, now: Date = new Date()): CrlStatus {
  const base = { source: crl.source, issuer: crl.issuerName, nextUpdate: crl.nextUpdate };
  if (crl.defect) return { ...base, status: 'defective', reason: crl.defect };
  if (now < crl.thisUpdate)
    return { ...base, status: 'not-yet-valid', reason: `thisUpdate is ${crl.thisUpdate.toISOString()}` };
  if (crl.nextUpdate && now > crl.nextUpdate)
    return { ...base, status: 'stale', reason: `past its nextUpdate ${crl.nextUpdate.toISOString()}` };
  return { ...base, status: 'valid', reason: undefined };
}

/** Every configured CRL's standing, in configuration order. */
export function crlStatuses(state: RevocationState | undefined, now: Date = new Date()): CrlStatus[] {
  return (state?.crls ?? []).map((crl) => crlStatus(crl, now));
}

function issuedBy(crl: CrlRecord, issuer: CertificateFacts): boolean {
  return crl.issuer !== undefined && crl.issuer.subject === issuer.subject && spkiHash(crl.issuer) === spkiHash(issuer);
}

/** The CRLs naming this issuer, by subject text, for messages about a missing one. */
function namedFor(state: RevocationState, issuer: CertificateFacts): CrlRecord[] {
  return state.crls.filter((crl) => crl.issuerName === issuer.subject);
}

/**
 * An intermediate that is also an anchor ends the path before its root, so the root's CRL would
 * never be consulted for it; an operator who revokes it there means it. Only a CRL whose signature
 * verified against another bundle certificate named as the anchor's issuer counts.
 */
function checkAnchor(anchor: CertificateFacts, state: RevocationState): void {
  const serial = normalSerial(anchor.serialNumber);
  for (const crl of state.crls) {
    const issuer = crl.issuer;
    if (!issuer || issuer === anchor || issuer.subject !== anchor.issuer) continue;
    if (anchor.authorityKeyId && issuer.subjectKeyId && anchor.authorityKeyId !== issuer.subjectKeyId) continue;
    const entry = crl.revoked.get(serial);
    if (!entry) continue;
    throw new GatewayError(
      'EGW_IDENTITY_REVOKED',
      `trust anchor "${anchor.subject}" (serial ${serial}) was revoked at ${entry.at.toISOString()}${entry.reason ? ` (${entry.reason})` : ''} by the CRL of "${issuer.subject}" (${crl.source})`,
      { details: { serial, issuer: issuer.subject, crl: crl.source } },
    );
  }
}

/**
 * Refuses a validated path (leaf first, anchor last) when a certificate in it is revoked, or,
 * with `required`, when an issuer in it has no current, valid CRL. The anchor itself is trusted
 * by configuration and is not looked up. A CRL whose signature verified still revokes after its
 * nextUpdate: revocation is permanent, staleness only means newer revocations may be missing.
 */
export function checkRevocation(
  path: readonly CertificateFacts[],
  state: RevocationState | undefined,
  now: Date = new Date(),
): void {
  if (!state || (state.crls.length === 0 && !state.required)) return;
  checkAnchor(path[path.length - 1] as CertificateFacts, state);
  for (let i = 0; i + 1 < path.length; i++) {
    const cert = path[i] as CertificateFacts;
    const issuer = path[i + 1] as CertificateFacts;
    const signed = state.crls.filter((crl) => issuedBy(crl, issuer));
    const serial = normalSerial(cert.serialNumber);
    for (const crl of signed) {
      const entry = crl.revoked.get(serial);
      if (!entry) continue;
      throw new GatewayError(
        'EGW_IDENTITY_REVOKED',
        `certificate "${cert.uris[0] ?? cert.subject}" (serial ${serial}) was revoked at ${entry.at.toISOString()}${entry.reason ? ` (${entry.reason})` : ''} by the CRL of "${issuer.subject}" (${crl.source})`,
        { details: { serial, issuer: issuer.subject, crl: crl.source } },
      );
    }
    if (state.required && !signed.some((crl) => crlStatus(crl, now).status === 'valid')) {
      const known = namedFor(state, issuer).map((crl) => {
        const status = crlStatus(crl, now);
        return `${crl.source}: ${status.reason ?? status.status}`;
      });
      throw new GatewayError(
        'EGW_IDENTITY_CRL_UNAVAILABLE',
        `identity.crlRequired: issuer "${issuer.subject}" has no current, valid CRL${known.length > 0 ? ` (${known.join('; ')})` : ' (none configured)'}`,
        { details: { issuer: issuer.subject } },
      );
    }
  }
}

/**
 * Whether the CRLs revoke a certificate of a path already validated under the same bundle: for
 * re-checking open connections after a reload (untrustedBecause). Only a revocation counts; a
 * missing or stale CRL is a refusal for new handshakes under crlRequired, not a reason to cut
 * what is open.
 */
export function revocationOf(
  path: readonly CertificateFacts[],
  state: RevocationState | undefined,
  now: Date = new Date(),
): GatewayError | undefined {
  try {
    checkRevocation(path, state && { crls: state.crls, required: false }, now);
    return undefined;
  } catch (error) {
    if (error instanceof GatewayError) return error;
    throw error;
  }
}
