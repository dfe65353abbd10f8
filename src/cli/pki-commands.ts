import { parseDuration } from '../core/duration.ts';
import { GatewayError } from '../core/errors.ts';
import { parseSpiffeId } from '../identity/spiffe-id.ts';
import { loadTrustBundle } from '../identity/trust-bundle.ts';
import { verifyChain } from '../identity/verify-chain.ts';
import { verifySvidLeaf } from '../identity/verify-svid.ts';
import { initCaDirectory, issueToDirectory } from '../pki/ca-directory.ts';
import { type CertificateFacts, certificateFacts } from '../pki/certificate-facts.ts';
import type { KeyType } from '../pki/key-pair.ts';
import { readCertificateBundle } from '../pki/pem-bundle.ts';

const keyType = (value: string): KeyType => (value === 'rsa' ? 'rsa-2048' : 'ecdsa-p256');

export async function runPkiInit(opts: {
  dir: string;
  trustDomain: string;
  keyType: string;
  force?: boolean;
}): Promise<void> {
  await initCaDirectory(opts.dir, {
    trustDomain: opts.trustDomain,
    keyType: keyType(opts.keyType),
    force: opts.force ?? false,
  });
  process.stdout.write(
    `wrote ${opts.dir}/{root-cert.pem,ca-cert.pem,ca-key.pem,cert-chain.pem} for trust domain ${opts.trustDomain}\n`,
  );
}

export async function runPkiIssue(opts: {
  caDir: string;
  spiffeId: string;
  out: string;
  dns: string[];
  ip: string[];
  ttl: string;
  keyType: string;
  includeRoot?: boolean;
}): Promise<void> {
  const id = parseSpiffeId(opts.spiffeId);
  if (id.segments.length === 0)
    throw new GatewayError('EGW_PKI_ARGUMENT', `--spiffe-id ${id.uri}: an SVID needs a non-root path`);
  const ttlMs = parseDuration(opts.ttl);
  if (ttlMs === undefined || ttlMs <= 0)
    throw new GatewayError('EGW_PKI_ARGUMENT', `--ttl ${opts.ttl}: expected a duration like 24h or 90d`);
  const leaf = await issueToDirectory(opts.caDir, opts.out, {
    spiffeIds: [id.uri],
    dnsNames: opts.dns,
    ipAddresses: opts.ip,
    ttlMs,
    keyType: keyType(opts.keyType),
    includeRoot: opts.includeRoot ?? false,
  });
  process.stdout.write(
    `wrote ${opts.out}/cert.pem and ${opts.out}/key.pem for ${id.uri} (expires ${leaf.cert.notAfter.toISOString()})\n`,
  );
}

function describeLeaf(file: string, leaf: CertificateFacts, chainLength: number): string[] {
  return [
    `file:        ${file}`,
    `subject:     ${leaf.subject || '(empty)'}`,
    `issuer:      ${leaf.issuer || '(empty)'}`,
    `serial:      ${leaf.serialNumber}`,
    `sha256:      ${leaf.sha256}`,
    `not before:  ${leaf.notBefore.toISOString()}`,
    `not after:   ${leaf.notAfter.toISOString()}`,
    `CA:          ${leaf.isCa}`,
    `URI SANs:    ${leaf.uris.join(', ') || '(none)'}`,
    `DNS SANs:    ${leaf.dnsNames.join(', ') || '(none)'}`,
    `IP SANs:     ${leaf.ipAddresses.join(', ') || '(none)'}`,
    `chain:       ${chainLength} more certificate(s) in the file`,
  ];
}

/** The trust domain given, else the one in the leaf's only URI SAN (if it parses). */
function inferTrustDomain(leaf: CertificateFacts, given: string | undefined): string | undefined {
  if (given || leaf.uris.length !== 1) return given;
  try {
    return parseSpiffeId(leaf.uris[0] as string).trustDomain;
  } catch {
    return undefined;
  }
}

/** Chain check against the anchors; an expiry already reported for the leaf is not counted twice. */
function checkChain(
  leaf: CertificateFacts,
  chain: CertificateFacts[],
  trustDomain: string | undefined,
  anchors: string,
  now: Date,
  out: { lines: string[]; violations: string[] },
): void {
  try {
    const bundle = loadTrustBundle(trustDomain ?? 'unknown', anchors);
    const path = verifyChain(leaf, chain, bundle, now);
    out.lines.push(
      `chain check: OK via ${path
        .slice(1)
        .map((c) => `"${c.subject}"`)
        .join(' -> ')}`,
    );
  } catch (error) {
    if (
      !/EXPIRED|NOT_YET_VALID/.test((error as GatewayError).code ?? '') ||
      !out.violations.some((v) => v.startsWith((error as GatewayError).code))
    ) {
      out.violations.push(`${(error as GatewayError).code}: ${(error as Error).message}`);
    }
  }
}

/** Prints what a verifier would see; exits 1 when the certificate breaks an X.509-SVID rule. */
export async function runPkiInspect(file: string, opts: { trustDomain?: string; anchors?: string }): Promise<void> {
  const [leafCert, ...chain] = readCertificateBundle(file);
  if (!leafCert) throw new GatewayError('EGW_PKI_FILE', `${file}: no certificate`);
  const leaf = certificateFacts(leafCert);
  const lines = describeLeaf(file, leaf, chain.length);
  const violations: string[] = [];
  const trustDomain = inferTrustDomain(leaf, opts.trustDomain);
  try {
    const id = verifySvidLeaf(leaf, trustDomain ?? '');
    lines.push(
      `identity:    ${id.uri}${id.namespace ? ` (namespace ${id.namespace}, service account ${id.serviceAccount})` : ''}`,
    );
  } catch (error) {
    violations.push(`${(error as GatewayError).code}: ${(error as Error).message}`);
  }
  const now = new Date();
  if (now > leaf.notAfter) violations.push(`EGW_IDENTITY_EXPIRED: expired at ${leaf.notAfter.toISOString()}`);
  if (now < leaf.notBefore)
    violations.push(`EGW_IDENTITY_NOT_YET_VALID: not valid before ${leaf.notBefore.toISOString()}`);
  if (opts.anchors)
    checkChain(leaf, chain.map(certificateFacts), trustDomain, opts.anchors, now, { lines, violations });
  lines.push(violations.length === 0 ? 'SVID rules:  OK' : `SVID rules:  ${violations.length} violation(s)`);
  for (const v of violations) lines.push(`  - ${v}`);
  process.stdout.write(`${lines.join('\n')}\n`);
  process.exitCode = violations.length === 0 ? 0 : 1;
}
