import 'reflect-metadata';
import type { X509Certificate as NodeCertificate } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { GatewayError } from '../core/errors.ts';

/**
 * What the verifier and the audit log need to know about one certificate. Node exposes neither
 * the KeyUsage bits nor extension criticality, so the DER is parsed with @peculiar/x509.
 */
export interface CertificateFacts {
  readonly node: NodeCertificate;
  readonly isCa: boolean;
  readonly pathLength: number | undefined;
  /** KeyUsage bit set (x509.KeyUsageFlags), or undefined when the extension is absent. */
  readonly keyUsage: number | undefined;
  readonly extendedKeyUsage: readonly string[] | undefined;
  readonly uris: readonly string[];
  readonly dnsNames: readonly string[];
  readonly ipAddresses: readonly string[];
  readonly sanCritical: boolean;
  /** RFC 4514-style DN, comma separated; '' for an empty subject. */
  readonly subject: string;
  readonly issuer: string;
  readonly serialNumber: string;
  readonly sha256: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** Hex keyIdentifier of the SubjectKeyIdentifier / AuthorityKeyIdentifier extensions, when present. */
  readonly subjectKeyId: string | undefined;
  readonly authorityKeyId: string | undefined;
  /** OIDs of the extensions marked critical: the verifier refuses those it does not process. */
  readonly criticalExtensions: readonly string[];
  /** DER of the NameConstraints extension value (parsed by the identity stage), when present. */
  readonly nameConstraints: Uint8Array<ArrayBuffer> | undefined;
}

function dn(nodeDn: string | undefined): string {
  return (nodeDn ?? '').split('\n').filter(Boolean).join(', ');
}

export function certificateFacts(cert: NodeCertificate): CertificateFacts {
  let parsed: x509.X509Certificate;
  try {
    parsed = new x509.X509Certificate(cert.raw);
  } catch (cause) {
    throw new GatewayError('EGW_IDENTITY_MALFORMED', 'certificate DER cannot be parsed', { cause });
  }
  const basic = parsed.getExtension(x509.BasicConstraintsExtension);
  const usage = parsed.getExtension(x509.KeyUsagesExtension);
  const eku = parsed.getExtension(x509.ExtendedKeyUsageExtension);
  const sanExtensions = parsed.getExtensions(x509.SubjectAlternativeNameExtension);
  const ski = parsed.getExtension(x509.SubjectKeyIdentifierExtension);
  const aki = parsed.getExtension(x509.AuthorityKeyIdentifierExtension);
  const names = sanExtensions.flatMap((ext) => ext.names.items);
  return Object.freeze({
    node: cert,
    isCa: basic?.ca ?? false,
    pathLength: basic?.pathLength,
    keyUsage: usage ? usage.usages : undefined,
    extendedKeyUsage: eku ? eku.usages.map(String) : undefined,
    uris: names.filter((n) => n.type === 'url').map((n) => n.value),
    dnsNames: names.filter((n) => n.type === 'dns').map((n) => n.value),
    ipAddresses: names.filter((n) => n.type === 'ip').map((n) => n.value),
    sanCritical: sanExtensions.some((ext) => ext.critical),
    subject: dn(cert.subject),
    issuer: dn(cert.issuer),
    serialNumber: cert.serialNumber.toUpperCase(),
    sha256: cert.fingerprint256.replaceAll(':', ''),
    notBefore: new Date(cert.validFrom),
    notAfter: new Date(cert.validTo),
    subjectKeyId: ski?.keyId?.toLowerCase(),
    authorityKeyId: aki?.keyId?.toLowerCase(),
    criticalExtensions: Object.freeze(parsed.extensions.filter((ext) => ext.critical).map((ext) => ext.type)),
    nameConstraints: nameConstraintsValue(parsed),
  });
}

const NAME_CONSTRAINTS_OID = '2.5.29.30';

function nameConstraintsValue(parsed: x509.X509Certificate): Uint8Array<ArrayBuffer> | undefined {
  const ext = parsed.extensions.find((e) => e.type === NAME_CONSTRAINTS_OID);
  return ext ? new Uint8Array(ext.value) : undefined;
}

export const KeyUsage = x509.KeyUsageFlags;
export const ExtendedKeyUsageOid = x509.ExtendedKeyUsage;
