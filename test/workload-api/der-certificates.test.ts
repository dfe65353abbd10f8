import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { isGatewayError } from '../../src/core/errors.ts';
import { splitDerCertificates } from '../../src/sources/workload-api/der-certificates.ts';
import { createTestPki, type TestPki } from '../helpers/test-pki.ts';

describe('splitting concatenated DER certificates (Workload API chains and bundles)', () => {
  let pki: TestPki;
  let leafDer: Buffer;
  let chain: Buffer;
  before(async () => {
    pki = await createTestPki();
    leafDer = new X509Certificate(pki.gateway.leaf.certPem).raw;
    chain = Buffer.concat([leafDer, new X509Certificate(pki.intermediate.certPem).raw]);
  });
  after(() => pki.cleanup());

  const refusal = (der: Buffer, limit = 16) => {
    try {
      splitDerCertificates(der, 'x509_svid', limit);
    } catch (error) {
      assert.ok(isGatewayError(error, 'EGW_WORKLOAD_API_INVALID'), String(error));
      return error.message;
    }
    return undefined;
  };

  it('splits a chain in order', () => {
    const certs = splitDerCertificates(chain, 'x509_svid', 16);
    assert.deepEqual(
      certs.map((c) => c.serialNumber),
      [pki.gateway.leaf.certPem, pki.intermediate.certPem].map((pem) => new X509Certificate(pem).serialNumber),
    );
  });

  it('refuses empty, truncated, trailing garbage, a non-SEQUENCE and more than the limit', () => {
    assert.equal(refusal(chain), undefined);
    assert.match(refusal(Buffer.alloc(0)) ?? '', /x509_svid is empty/);
    assert.match(refusal(chain.subarray(0, chain.length - 1)) ?? '', /not a DER certificate/);
    assert.match(refusal(Buffer.concat([chain, Buffer.from([0x30])])) ?? '', /not a DER certificate/);
    assert.match(refusal(Buffer.from('nope')) ?? '', /offset 0 are not a DER certificate/);
    assert.match(refusal(chain, 1) ?? '', /more than 1 certificates/);
  });

  it('refuses a well-framed SEQUENCE that is not a certificate', () => {
    assert.equal(refusal(leafDer), undefined);
    assert.match(refusal(Buffer.from([0x30, 0x03, 0x02, 0x01, 0x05])) ?? '', /certificate #1 is not valid DER/);
  });
});
