import { GatewayError } from '../core/errors.ts';
import { type CertificateFacts, KeyUsage } from '../pki/certificate-facts.ts';
import type { TrustBundle } from './trust-bundle.ts';

const MAX_PATH_DEPTH = 8;
/** More certificates than a valid path can use is an attack or a broken client. */
const MAX_PRESENTED = MAX_PATH_DEPTH;
/**
 * Signature checks one connection may cost. Path building is a search; a client can send
 * look-alike CA certificates that all verify each other and make it explode (n!/(n-8)!), on
 * the event loop, before any identity is known. A real mesh chain needs one to three checks.
 */
const MAX_SIGNATURE_CHECKS = 32;

/**
 * RFC 5280-style path validation from a leaf to any anchor of the bundle, written against
 * node:crypto's native signature check. OpenSSL's own verdict is not enough on its own:
 * Node's server never applies `allowPartialTrustChain`, and on a hand-built TLSSocket the verify
 * result is not enforced (see docs/design.md). This function is the gate.
 *
 * `presented` are the untrusted certificates the peer sent after its leaf (in any order).
 * Returns the validated path, leaf first, anchor last. Throws GatewayError with an EGW_IDENTITY_* code.
 */
export function verifyChain(
  leaf: CertificateFacts,
  presented: readonly CertificateFacts[],
  bundle: TrustBundle,
  now: Date = new Date(),
): CertificateFacts[] {
  checkValidity(leaf, now, 'leaf');
  if (presented.length > MAX_PRESENTED) {
    throw new GatewayError(
      'EGW_IDENTITY_CHAIN_UNTRUSTED',
      `the client sent ${presented.length + 1} certificates; at most ${MAX_PRESENTED + 1} are accepted`,
    );
  }
  let lastProblem: GatewayError | undefined;
  let signatureBudget = MAX_SIGNATURE_CHECKS;

  const extend = (path: CertificateFacts[]): CertificateFacts[] | undefined => {
    const child = path[path.length - 1] as CertificateFacts;
    if (path.length > MAX_PATH_DEPTH) {
      lastProblem = new GatewayError(
        'EGW_IDENTITY_CHAIN_UNTRUSTED',
        `chain is longer than ${MAX_PATH_DEPTH} certificates`,
      );
      return undefined;
    }
    // Anchors first: a trusted intermediate ends the path even when the peer also sent the root.
    const candidates: Array<[CertificateFacts, boolean]> = [
      ...bundle.anchors.map((a): [CertificateFacts, boolean] => [a, true]),
      ...presented.filter((p) => !path.includes(p)).map((p): [CertificateFacts, boolean] => [p, false]),
    ];
    for (const [issuer, isAnchor] of candidates) {
      if (issuer.subject !== child.issuer) continue;
      if (--signatureBudget < 0)
        throw new GatewayError(
          'EGW_IDENTITY_CHAIN_UNTRUSTED',
          `no path found within ${MAX_SIGNATURE_CHECKS} signature checks`,
        );
      if (!child.node.verify(issuer.node.publicKey)) {
        lastProblem ??= new GatewayError(
          'EGW_IDENTITY_CHAIN_UNTRUSTED',
          `signature of "${child.subject || child.serialNumber}" does not verify with the key of "${issuer.subject}"`,
        );
        continue;
      }
      try {
        checkIssuer(issuer, path, now);
      } catch (problem) {
        lastProblem = problem as GatewayError;
        continue;
      }
      if (isAnchor) return [...path, issuer];
      const longer = extend([...path, issuer]);
      if (longer) return longer;
    }
    return undefined;
  };

  const path = extend([leaf]);
  if (path) return path;
  throw (
    lastProblem ??
    new GatewayError('EGW_IDENTITY_CHAIN_UNTRUSTED', `no trust anchor or presented certificate issued "${leaf.issuer}"`)
  );
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
}
