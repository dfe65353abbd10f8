import type { KeyObject } from 'node:crypto';
import { GatewayError } from '../core/errors.ts';

const RSA_MIN_BITS = 2048;
const RSA_MAX_BITS = 8192;
/** RSA verification time grows with the exponent's length: 65537 is the norm, 2^32 is generous. */
const RSA_MAX_EXPONENT = 2n ** 32n + 1n;
/** OpenSSL names; P-256 and P-384 are the curves X.509-SVID issuers (Istio, SPIRE, cert-manager) use. */
const EC_CURVES: Readonly<Record<string, number>> = { prime256v1: 1, secp384r1: 3 };
const BASE_EXPONENT_BITS = 17; // 65537

function refuse(role: string, why: string): never {
  throw new GatewayError('EGW_IDENTITY_KEY_POLICY', `${role} has a public key outside the key policy: ${why}`);
}

/**
 * Checks a public key against the verifier's key policy and returns what one signature check
 * with it costs, in units of a P-256 verification. A key a client chose is never used for a
 * signature check before this passes: one RSA-16384 check with a 64-bit exponent costs ~6.5 ms.
 */
export function verificationCost(key: KeyObject, role: string): number {
  const details = key.asymmetricKeyDetails ?? {};
  switch (key.asymmetricKeyType) {
    case 'rsa':
    case 'rsa-pss': {
      const bits = details.modulusLength ?? 0;
      const exponent = details.publicExponent ?? 0n;
      if (bits < RSA_MIN_BITS || bits > RSA_MAX_BITS)
        refuse(role, `RSA-${bits} (allowed ${RSA_MIN_BITS}–${RSA_MAX_BITS})`);
      if (exponent < 3n || exponent % 2n === 0n || exponent > RSA_MAX_EXPONENT) {
        refuse(role, `RSA public exponent ${exponent} (allowed: odd, 3 to 2^32+1)`);
      }
      const exponentBits = exponent.toString(2).length;
      return Math.max(1, (bits / RSA_MIN_BITS) ** 2 * Math.max(1, exponentBits / BASE_EXPONENT_BITS));
    }
    case 'ec': {
      const cost = EC_CURVES[details.namedCurve ?? ''];
      if (cost === undefined) refuse(role, `EC curve ${details.namedCurve ?? 'unknown'} (allowed P-256, P-384)`);
      return cost;
    }
    case 'ed25519':
      return 1;
    default:
      return refuse(role, `key type ${key.asymmetricKeyType ?? 'unknown'}`);
  }
}
