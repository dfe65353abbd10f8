import 'reflect-metadata';
import { isIP } from 'node:net';
import * as x509 from '@peculiar/x509';
import { GatewayError } from '../core/errors.ts';
import { generateKeyPair, type KeyType, signingAlgorithmFor } from './key-pair.ts';

/** A certificate together with the key pair it certifies, as minted here. */
export interface IssuedCertificate {
  readonly cert: x509.X509Certificate;
  readonly keys: CryptoKeyPair;
  readonly certPem: string;
}

const HOUR = 3_600_000;
/** Back-date by two minutes, like Istio's ClockSkewGracePeriod, so a peer with a slow clock accepts it. */
const CLOCK_SKEW_MS = 2 * 60_000;

export interface CaOptions {
  readonly commonName: string;
  readonly organization?: string;
  readonly keyType?: KeyType;
  readonly ttlMs?: number;
  readonly pathLength?: number;
}

function caName(options: CaOptions): string {
  const cn = options.commonName.replace(/([,+"\\<>;=])/g, '\\$1');
  return options.organization ? `O=${options.organization.replace(/([,+"\\<>;=])/g, '\\$1')}, CN=${cn}` : `CN=${cn}`;
}

function randomSerial(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[0] = (bytes[0] ?? 0) & 0x7f; // keep the serial positive
  return Buffer.from(bytes).toString('hex');
}

async function caExtensions(
  keys: CryptoKeyPair,
  pathLength: number | undefined,
  issuerKey?: CryptoKey,
): Promise<x509.Extension[]> {
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(true, pathLength, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
  ];
  if (issuerKey) extensions.push(await x509.AuthorityKeyIdentifierExtension.create(issuerKey));
  return extensions;
}

/** A self-signed root CA, like the `root-cert.pem` of Istio's plugged-in CA. */
export async function createRootCa(options: CaOptions): Promise<IssuedCertificate> {
  const keys = await generateKeyPair(options.keyType ?? 'ecdsa-p256');
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: caName(options),
    notBefore: new Date(now - CLOCK_SKEW_MS),
    notAfter: new Date(now + (options.ttlMs ?? 10 * 365 * 24 * HOUR)),
    keys,
    signingAlgorithm: signingAlgorithmFor(keys.privateKey),
    extensions: await caExtensions(keys, options.pathLength),
  });
  return { cert, keys, certPem: cert.toString('pem') };
}

/** An intermediate CA signed by `issuer`, like Istio's `ca-cert.pem`. */
export async function createIntermediateCa(issuer: IssuedCertificate, options: CaOptions): Promise<IssuedCertificate> {
  const keys = await generateKeyPair(options.keyType ?? 'ecdsa-p256');
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: caName(options),
    issuer: issuer.cert.subjectName,
    notBefore: new Date(now - CLOCK_SKEW_MS),
    notAfter: new Date(now + (options.ttlMs ?? 5 * 365 * 24 * HOUR)),
    publicKey: keys.publicKey,
    signingKey: issuer.keys.privateKey,
    signingAlgorithm: signingAlgorithmFor(issuer.keys.privateKey),
    extensions: await caExtensions(keys, options.pathLength, issuer.keys.publicKey),
  });
  return { cert, keys, certPem: cert.toString('pem') };
}

/**
 * Knobs for a leaf. The defaults give Istio's workload profile (empty subject, one critical URI SAN,
 * KeyUsage digitalSignature|keyEncipherment, EKU serverAuth+clientAuth, CA:FALSE). The other fields
 * exist so tests can mint exactly the broken certificates the verifier must refuse.
 */
export interface LeafOptions {
  readonly spiffeIds?: readonly string[];
  readonly dnsNames?: readonly string[];
  readonly ipAddresses?: readonly string[];
  readonly keyType?: KeyType;
  readonly ttlMs?: number;
  readonly notBefore?: Date;
  readonly notAfter?: Date;
  readonly commonName?: string;
  readonly isCa?: boolean;
  readonly keyUsage?: number;
  readonly omitKeyUsage?: boolean;
  readonly extendedKeyUsage?: readonly string[];
  /** Sign with this key instead of the issuer's, to forge a chain that only looks right. */
  readonly signingKeyOverride?: CryptoKey;
}

export async function issueLeaf(issuer: IssuedCertificate, options: LeafOptions): Promise<IssuedCertificate> {
  const keys = await generateKeyPair(options.keyType ?? 'ecdsa-p256');
  const names: x509.JsonGeneralName[] = [
    ...(options.spiffeIds ?? []).map((value) => ({ type: 'url' as const, value })),
    ...(options.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value })),
    ...(options.ipAddresses ?? []).map((value) => {
      if (isIP(value) === 0) throw new GatewayError('EGW_PKI_ARGUMENT', `not an IP address: ${value}`);
      return { type: 'ip' as const, value };
    }),
  ];
  const emptySubject = !options.commonName;
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(options.isCa ?? false, undefined, true),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    await x509.AuthorityKeyIdentifierExtension.create(issuer.keys.publicKey),
  ];
  if (!options.omitKeyUsage) {
    const usage = options.keyUsage ?? x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment;
    extensions.push(new x509.KeyUsagesExtension(usage, true));
  }
  extensions.push(
    new x509.ExtendedKeyUsageExtension(
      [...(options.extendedKeyUsage ?? [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth])],
      false,
    ),
  );
  // X.509-SVID §3.1: with an empty subject the SAN extension must be critical.
  if (names.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(names, emptySubject));
  const now = Date.now();
  const notBefore = options.notBefore ?? new Date(now - CLOCK_SKEW_MS);
  const signingKey = options.signingKeyOverride ?? issuer.keys.privateKey;
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: emptySubject ? '' : `CN=${options.commonName}`,
    issuer: issuer.cert.subjectName,
    notBefore,
    notAfter: options.notAfter ?? new Date(now + (options.ttlMs ?? 24 * HOUR)),
    publicKey: keys.publicKey,
    signingKey,
    signingAlgorithm: signingAlgorithmFor(signingKey),
    extensions,
  });
  return { cert, keys, certPem: cert.toString('pem') };
}
