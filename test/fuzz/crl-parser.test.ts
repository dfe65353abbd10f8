import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { isGatewayError } from '../../src/core/errors.ts';
import { crlBlocks, crlRecord } from '../../src/identity/revocation-list.ts';
import { type CertificateFacts, certificateFacts } from '../../src/pki/certificate-facts.ts';
import { createTestPki, type TestPki } from '../helpers/test-pki.ts';
import { createOpensslCa } from '../identity/helpers/openssl-ca.ts';
import { fuzzOptions } from './fuzz-options.ts';

const SOURCE = 'fuzz.crl';

/**
 * "Anything else is a clean error": a CRL file's bytes either give records (each signature-checked
 * or marked defective) or EGW_PKI_FILE naming the file, never another exception. The file is the
 * operator's, but a truncated copy or a wrong file must fail the load with a readable message.
 */
async function outcome(bytes: Buffer, anchors: readonly CertificateFacts[]): Promise<'records' | 'error'> {
  try {
    const blocks = crlBlocks(bytes, SOURCE);
    for (const der of blocks) {
      const record = await crlRecord(der, SOURCE, anchors);
      assert.ok(record.thisUpdate instanceof Date, 'a parsed CRL has a thisUpdate');
      assert.ok(record.defect === undefined || typeof record.defect === 'string');
    }
    return 'records';
  } catch (error) {
    assert.ok(isGatewayError(error, 'EGW_PKI_FILE'), `not a clean error: ${error}`);
    assert.ok((error as Error).message.includes(SOURCE), (error as Error).message);
    return 'error';
  }
}

describe('fuzz: CRL parser (identity.crls)', () => {
  let pki: TestPki;
  let anchors: CertificateFacts[];
  let der: Buffer;
  let pem: Buffer;

  before(async () => {
    pki = await createTestPki();
    anchors = [certificateFacts(new X509Certificate(pki.intermediate.certPem))];
    const ca = await createOpensslCa(pki.intermediate, join(pki.dir, 'fuzz-ca'));
    ca.revoke((await pki.workload('shop', 'api')).leaf.certPem);
    der = readFileSync(ca.gencrl('fuzz', { der: true }));
    pem = readFileSync(ca.gencrl('fuzz-pem'));
  });
  after(() => pki.cleanup());

  it('positive control: the openssl-minted CRL parses, verifies against its issuer and lists one serial', async () => {
    const [block] = crlBlocks(der, SOURCE);
    const record = await crlRecord(block as Buffer, SOURCE, anchors);
    assert.equal(record.defect, undefined);
    assert.equal(record.revoked.size, 1);
    assert.equal(await outcome(pem, anchors), 'records');
  });

  it('any mutation of a DER or PEM CRL gives records or EGW_PKI_FILE naming the file', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.boolean(),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }),
        fc.option(fc.nat(), { nil: undefined }),
        async (usePem, flips, cut) => {
          const bytes = Buffer.from(usePem ? pem : der);
          for (const [at, value] of flips) bytes[at % bytes.length] = value;
          const input = cut === undefined ? bytes : bytes.subarray(0, cut % bytes.length);
          await outcome(input, anchors);
        },
      ),
      fuzzOptions(300),
    );
  });

  it('a flipped byte in the signed part never yields a CRL that verifies as issued by the anchor', async () => {
    // The TBS part starts after the outer SEQUENCE header; a change there must break the signature
    // (or the parse), so a tampered CRL can never revoke, or un-revoke, under the anchor's name.
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 4, max: 60 }), fc.integer({ min: 1, max: 255 }), async (at, delta) => {
        const bytes = Buffer.from(der);
        bytes[at] = ((bytes[at] as number) + delta) % 256;
        try {
          const [block] = crlBlocks(bytes, SOURCE);
          const record = await crlRecord(block as Buffer, SOURCE, anchors);
          assert.ok(record.defect !== undefined || record.issuer === undefined, `byte ${at} +${delta} still verifies`);
        } catch (error) {
          assert.ok(isGatewayError(error, 'EGW_PKI_FILE'), String(error));
        }
      }),
      fuzzOptions(150),
    );
  });

  it('random bytes are a clean error or an empty result, never a crash', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 400 }), async (random) => {
        await outcome(Buffer.from(random), anchors);
      }),
      fuzzOptions(300),
    );
  });
});
