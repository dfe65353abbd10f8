import 'reflect-metadata';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import { GatewayError } from '../core/errors.ts';
import {
  createIntermediateCa,
  createRootCa,
  type IssuedCertificate,
  issueLeaf,
  type LeafOptions,
} from './issue-certificate.ts';
import { exportPrivateKeyPem, importPrivateKeyPem, type KeyType } from './key-pair.ts';

/** File names of Istio's plugged-in CA secret (`cacerts`). */
export const CA_FILES = Object.freeze({
  root: 'root-cert.pem',
  caCert: 'ca-cert.pem',
  caKey: 'ca-key.pem',
  chain: 'cert-chain.pem',
});

function writeSecret(path: string, text: string): void {
  writeFileSync(path, text, { mode: 0o600 });
}

/**
 * `pki init`: a root and a signing intermediate in the `cacerts` layout. The root key is not
 * written: the intermediate is what signs workloads (and what Istio's istiod holds).
 */
export async function initCaDirectory(
  dir: string,
  options: { trustDomain: string; keyType?: KeyType; force?: boolean },
): Promise<void> {
  if (!options.force && existsSync(join(dir, CA_FILES.caKey))) {
    throw new GatewayError('EGW_PKI_ARGUMENT', `${join(dir, CA_FILES.caKey)} exists; pass --force to replace the CA`);
  }
  mkdirSync(dir, { recursive: true });
  const keyType = options.keyType ?? 'ecdsa-p256';
  const root = await createRootCa({
    commonName: `${options.trustDomain} root CA`,
    organization: 'mesh-egress-gateway',
    keyType,
  });
  const intermediate = await createIntermediateCa(root, {
    commonName: `${options.trustDomain} intermediate CA`,
    organization: 'mesh-egress-gateway',
    keyType,
    pathLength: 0,
  });
  writeFileSync(join(dir, CA_FILES.root), root.certPem);
  writeFileSync(join(dir, CA_FILES.caCert), intermediate.certPem);
  writeSecret(join(dir, CA_FILES.caKey), await exportPrivateKeyPem(intermediate.keys.privateKey));
  writeFileSync(join(dir, CA_FILES.chain), `${intermediate.certPem}\n${root.certPem}\n`);
}

/** Loads the signing intermediate of a `cacerts` directory, ready to issue leaves. */
export async function loadCaDirectory(dir: string): Promise<{ ca: IssuedCertificate; chainPem: string }> {
  const read = (name: string) => {
    try {
      return readFileSync(join(dir, name), 'utf8');
    } catch (cause) {
      throw new GatewayError(
        'EGW_PKI_FILE',
        `${join(dir, name)}: ${(cause as NodeJS.ErrnoException).code ?? (cause as Error).message}`,
        { cause },
      );
    }
  };
  const certPem = read(CA_FILES.caCert);
  const privateKey = await importPrivateKeyPem(read(CA_FILES.caKey), join(dir, CA_FILES.caKey));
  const cert = new x509.X509Certificate(x509.PemConverter.decodeFirst(certPem));
  const publicKey = await cert.publicKey.export();
  // The chain sent after a leaf: the intermediate (and any CAs above it that istiod would send).
  const chainPem = existsSync(join(dir, CA_FILES.chain)) ? read(CA_FILES.chain) : certPem;
  return { ca: { cert, keys: { privateKey, publicKey }, certPem: cert.toString('pem') }, chainPem };
}

/** `pki issue`: writes OUTDIR/cert.pem (leaf, then the CA chain) and OUTDIR/key.pem. */
export async function issueToDirectory(
  caDir: string,
  outDir: string,
  options: LeafOptions & { includeRoot?: boolean },
): Promise<IssuedCertificate> {
  const { ca, chainPem } = await loadCaDirectory(caDir);
  const leaf = await issueLeaf(ca, options);
  mkdirSync(outDir, { recursive: true });
  const chain = options.includeRoot ? chainPem : ca.certPem;
  writeFileSync(join(outDir, 'cert.pem'), `${leaf.certPem}\n${chain.trim()}\n`);
  writeSecret(join(outDir, 'key.pem'), await exportPrivateKeyPem(leaf.keys.privateKey));
  return leaf;
}
