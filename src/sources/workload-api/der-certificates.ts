import { X509Certificate } from 'node:crypto';
import { GatewayError } from '../../core/errors.ts';

/**
 * Splits concatenated ASN.1 DER certificates (how the Workload API carries chains and bundles)
 * by reading each outer SEQUENCE header. At most `limit` certificates: the agent is local, but
 * a broken one must not make the gateway parse without bound.
 */
export function splitDerCertificates(der: Buffer, what: string, limit: number): X509Certificate[] {
  if (der.length === 0) throw invalid(`${what} is empty`);
  const certs: X509Certificate[] = [];
  let offset = 0;
  while (offset < der.length) {
    if (certs.length >= limit) throw invalid(`${what} holds more than ${limit} certificates`);
    const end = offset + sequenceLength(der, offset, what);
    try {
      certs.push(new X509Certificate(der.subarray(offset, end)));
    } catch (cause) {
      throw invalid(`${what}: certificate #${certs.length + 1} is not valid DER`, cause);
    }
    offset = end;
  }
  return certs;
}

/** Total length (header + content) of the DER SEQUENCE at `offset`. */
function sequenceLength(der: Buffer, offset: number, what: string): number {
  const bad = () => invalid(`${what}: bytes at offset ${offset} are not a DER certificate`);
  if (der[offset] !== 0x30 || offset + 2 > der.length) throw bad();
  const first = der[offset + 1] as number;
  let header = 2;
  let length = first;
  if (first & 0x80) {
    const octets = first & 0x7f;
    // A certificate is far below 16 MiB: more than 3 length octets is malformed here.
    if (octets === 0 || octets > 3 || offset + 2 + octets > der.length) throw bad();
    length = 0;
    for (let i = 0; i < octets; i++) length = length * 256 + (der[offset + 2 + i] as number);
    header += octets;
  }
  if (offset + header + length > der.length) throw bad();
  return header + length;
}

function invalid(message: string, cause?: unknown): GatewayError {
  return new GatewayError('EGW_WORKLOAD_API_INVALID', message, cause === undefined ? {} : { cause });
}
