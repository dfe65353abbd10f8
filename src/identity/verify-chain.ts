import { GatewayError } from '../core/errors.ts';
import { type CertificateFacts, KeyUsage } from '../pki/certificate-facts.ts';
import { DEFAULT_CHAIN_LIMITS } from './chain-limits.ts';
import { verificationCost } from './key-policy.ts';
import { checkCriticalExtensions, checkNameConstraints } from './path-constraints.ts';
import type { TrustBundle } from './trust-bundle.ts';

const MAX_PATH_DEPTH = 8;

/** What one verification cost; filled in by verifyChain when the caller passes it (tests, bench). */
export interface VerifyStats {
  signatureChecks: number;
  /** Work spent, in the units of ChainLimits.verifyWorkBudget. */
  work: number;
}

export interface VerifyOptions {
  /** Defaults to the bundle's limits. */
  readonly workBudget?: number;
  readonly stats?: VerifyStats;
}

/**
 * RFC 5280-style path validation from a leaf to any anchor of the bundle, written against
 * node:crypto's native signature check. OpenSSL's own verdict is not enough on its own:
 * Node's server never applies `allowPartialTrustChain`, and on a hand-built TLSSocket the verify
 * result is not enforced (see docs/design.md). This function is the gate.
 *
 * `presented` are the untrusted certificates the peer sent after its leaf (in any order); their
 * keys must already have passed the key policy (verifyPeerSvid does that first). Every candidate
 * issuer is filtered by name, key identifier and the cheap CA rules before its signature is
 * checked, and signature checks are charged by key size against a work budget. Every certificate
 * of the path must carry only critical extensions this verifier processes, and the path must
 * satisfy every CA's name constraints (path-constraints.ts): RFC 5280 refusals that used to come
 * only from OpenSSL's verdict, as reason "UNSPECIFIED".
 * Returns the validated path, leaf first, anchor last. Throws GatewayError with an EGW_IDENTITY_* code.
 */
export function verifyChain(
  leaf: CertificateFacts,
  presented: readonly CertificateFacts[],
  bundle: TrustBundle,
  now: Date = new Date(),
  options: VerifyOptions = {},
): CertificateFacts[] {
  const limits = bundle.limits ?? DEFAULT_CHAIN_LIMITS;
  checkValidity(leaf, now, 'leaf');
  checkCriticalExtensions(leaf, 'leaf');
  if (presented.length + 1 > limits.maxChainCertificates) {
    throw new GatewayError(
      'EGW_IDENTITY_CHAIN_TOO_LARGE',
      `the client sent ${presented.length + 1} certificates; at most ${limits.maxChainCertificates} are accepted`,
    );
  }
  const search = new PathSearch(bundle, presented, now, options.workBudget ?? limits.verifyWorkBudget, options.stats);
  const path = search.extend([leaf]);
  if (path) {
    checkNameConstraints(path);
    return path;
  }
  throw (
    search.lastProblem ??
    new GatewayError('EGW_IDENTITY_CHAIN_UNTRUSTED', `no trust anchor or presented certificate issued "${leaf.issuer}"`)
  );
}

/** A depth-first search for a path to an anchor; anchors are tried first at every step. */
class PathSearch {
  lastProblem: GatewayError | undefined;
  private readonly costs = new Map<CertificateFacts, number>();
  private work = 0;
  private checks = 0;

  constructor(
    private readonly bundle: TrustBundle,
    private readonly presented: readonly CertificateFacts[],
    private readonly now: Date,
    private readonly budget: number,
    private readonly stats: VerifyStats | undefined,
  ) {}

  extend(path: CertificateFacts[]): CertificateFacts[] | undefined {
    if (path.length > MAX_PATH_DEPTH) {
      this.lastProblem = new GatewayError(
        'EGW_IDENTITY_CHAIN_UNTRUSTED',
        `chain is longer than ${MAX_PATH_DEPTH} certificates`,
      );
      return undefined;
    }
    // Anchors first: a trusted intermediate ends the path even when the peer also sent the root.
    for (const issuer of this.bundle.anchors) {
      if (this.issues(issuer, path)) return [...path, issuer];
    }
    for (const issuer of this.presented) {
      if (path.includes(issuer) || !this.issues(issuer, path)) continue;
      const longer = this.extend([...path, issuer]);
      if (longer) return longer;
    }
    return undefined;
  }

  /** Cheap filters first; the signature check last, paid from the budget. */
  private issues(issuer: CertificateFacts, path: readonly CertificateFacts[]): boolean {
    const child = path[path.length - 1] as CertificateFacts;
    if (issuer.subject !== child.issuer) return false;
    // RFC 5280 §4.2.1.1: when both identifiers are present they must match for this issuer.
    if (child.authorityKeyId && issuer.subjectKeyId && child.authorityKeyId !== issuer.subjectKeyId) return false;
    try {
      checkIssuer(issuer, path, this.now);
    } catch (problem) {
      this.lastProblem = problem as GatewayError;
      return false;
    }
    this.charge(issuer);
    if (child.node.verify(issuer.node.publicKey)) return true;
    this.lastProblem ??= new GatewayError(
      'EGW_IDENTITY_CHAIN_UNTRUSTED',
      `signature of "${child.subject || child.serialNumber}" does not verify with the key of "${issuer.subject}"`,
    );
    return false;
  }

  private charge(issuer: CertificateFacts): void {
    let cost = this.costs.get(issuer);
    if (cost === undefined) {
      cost = verificationCost(issuer.node.publicKey, `issuer "${issuer.subject}"`);
      this.costs.set(issuer, cost);
    }
    if (this.work + cost > this.budget) {
      throw new GatewayError(
        'EGW_IDENTITY_VERIFY_BUDGET',
        `no path found within the verification budget (${this.budget} units, ${this.checks} signature checks done)`,
      );
    }
    this.work += cost;
    this.checks += 1;
    if (this.stats) {
      this.stats.signatureChecks = this.checks;
      this.stats.work = this.work;
    }
  }
}

function checkValidity(cert: CertificateFacts, now: Date, role: string): void {
  if (now < cert.notBefore) {
    throw new GatewayError(
      'EGW_IDENTITY_NOT_YET_VALID',
      `${role} certificate is not valid before ${cert.notBefore.toISOString()}`,
    );
  }
  if (now > cert.notAfter) {
    throw new GatewayError('EGW_IDENTITY_EXPIRED', `${role} certificate expired at ${cert.notAfter.toISOString()}`);
  }
}

/** `path` is the chain below `issuer`; its length minus one is the number of CAs the issuer vouches for. */
function checkIssuer(issuer: CertificateFacts, path: readonly CertificateFacts[], now: Date): void {
  if (!issuer.isCa) {
    throw new GatewayError(
      'EGW_IDENTITY_ISSUER_NOT_CA',
      `"${path[path.length - 1]?.subject || 'certificate'}" is signed by a certificate that is not a CA`,
    );
  }
  if (issuer.keyUsage !== undefined && (issuer.keyUsage & KeyUsage.keyCertSign) === 0) {
    throw new GatewayError('EGW_IDENTITY_ISSUER_NOT_CA', `issuer "${issuer.subject}" lacks the keyCertSign KeyUsage`);
  }
  const intermediatesBelow = path.length - 1;
  if (issuer.pathLength !== undefined && intermediatesBelow > issuer.pathLength) {
    throw new GatewayError(
      'EGW_IDENTITY_PATH_LENGTH',
      `issuer "${issuer.subject}" allows ${issuer.pathLength} intermediates below it, the chain has ${intermediatesBelow}`,
    );
  }
  checkValidity(issuer, now, `issuer "${issuer.subject}"`);
  checkCriticalExtensions(issuer, 'issuer');
}
