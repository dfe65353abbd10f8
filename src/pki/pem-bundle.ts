import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { GatewayError } from '../core/errors.ts';

const CERT_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** Splits a PEM text into certificates, in file order. Throws if it holds none or a broken one. */
export function parseCertificateBundle(pem: string, source: string): X509Certificate[] {
  const blocks = pem.match(CERT_BLOCK) ?? [];
  if (blocks.length === 0) throw new GatewayError('EGW_PKI_FILE', `${source}: no PEM certificate found`);
  return blocks.map((block, index) => {
    try {
      return new X509Certificate(block);
    } catch (cause) {
      throw new GatewayError('EGW_PKI_FILE', `${source}: certificate #${index + 1} cannot be parsed`, { cause });
    }
  });
}

export function readCertificateBundle(path: string): X509Certificate[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new GatewayError('EGW_PKI_FILE', `${path}: ${(cause as Error).message}`, { cause });
  }
  return parseCertificateBundle(text, path);
}
