import 'reflect-metadata';
import { createPrivateKey, webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { GatewayError } from '../core/errors.ts';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

export type KeyType = 'ecdsa-p256' | 'rsa-2048';

const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const RSA_2048 = {
  name: 'RSASSA-PKCS1-v1_5',
  modulusLength: 2048,
  publicExponent: new Uint8Array([1, 0, 1]),
  hash: 'SHA-256',
} as const;

export function keyAlgorithm(type: KeyType): EcKeyGenParams | RsaHashedKeyGenParams {
  return type === 'rsa-2048' ? RSA_2048 : EC_P256;
}

/** The signature algorithm a CA key signs with: SHA-256 on its own key type. */
export function signingAlgorithmFor(key: CryptoKey): Algorithm | EcdsaParams {
  return key.algorithm.name === 'ECDSA'
    ? ({ name: 'ECDSA', hash: 'SHA-256' } as EcdsaParams)
    : { name: 'RSASSA-PKCS1-v1_5' };
}

export async function generateKeyPair(type: KeyType): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(keyAlgorithm(type), true, ['sign', 'verify'])) as CryptoKeyPair;
}

export async function exportPrivateKeyPem(key: CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey('pkcs8', key);
  return x509.PemConverter.encode(der, 'PRIVATE KEY');
}

/**
 * Imports a signing key from any PEM form (PKCS#8, PKCS#1 "RSA PRIVATE KEY", SEC1 "EC PRIVATE KEY"),
 * because Istio `cacerts` secrets made by other tools use all three.
 */
export async function importPrivateKeyPem(pem: string, source: string): Promise<CryptoKey> {
  let keyObject: ReturnType<typeof createPrivateKey>;
  try {
    keyObject = createPrivateKey(pem);
  } catch (cause) {
    throw new GatewayError('EGW_PKI_FILE', `${source}: not a readable private key`, { cause });
  }
  const der = keyObject.export({ format: 'der', type: 'pkcs8' });
  if (keyObject.asymmetricKeyType === 'ec') {
    const curve = keyObject.asymmetricKeyDetails?.namedCurve;
    if (curve !== 'prime256v1')
      throw new GatewayError('EGW_PKI_FILE', `${source}: EC key on curve ${curve}; only P-256 is supported`);
    return webcrypto.subtle.importKey('pkcs8', der, EC_P256, true, ['sign']) as Promise<CryptoKey>;
  }
  if (keyObject.asymmetricKeyType === 'rsa') {
    return webcrypto.subtle.importKey('pkcs8', der, { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, true, [
      'sign',
    ]) as Promise<CryptoKey>;
  }
  throw new GatewayError('EGW_PKI_FILE', `${source}: unsupported key type ${keyObject.asymmetricKeyType}`);
}
