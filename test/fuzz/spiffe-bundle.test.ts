import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { before, describe, it } from 'node:test';
import fc from 'fast-check';
import { isGatewayError } from '../../src/core/errors.ts';
import { formatSpiffeBundle, parseSpiffeBundle, type SpiffeBundle } from '../../src/identity/spiffe-bundle.ts';
import { createIntermediateCa, createRootCa } from '../../src/pki/issue-certificate.ts';
import { fuzzOptions, tokenString } from './fuzz-options.ts';

const FILE = 'partner.jwks.json';
const JSON_TOKENS = ['{', '}', '[', ']', '"', ':', ',', 'null', 'true', '-1', '1e999', '0', '"keys"', '"use"'];
const MEMBER_TOKENS = ['"x509-svid"', '"jwt-svid"', '"x5c"', '"kid"', '"kty"', '"EC"', '"RSA"', '"AAAA"', '\\u0000'];

function parseOrError(text: string): SpiffeBundle | Error {
  try {
    return parseSpiffeBundle(text, FILE);
  } catch (error) {
    return error as Error;
  }
}

/** "Anything else is a clean error": EGW_PKI_FILE naming the file, never another exception. */
function assertCleanOutcome(text: string): void {
  const result = parseOrError(text);
  if (result instanceof Error) {
    assert.ok(isGatewayError(result, 'EGW_PKI_FILE'), `${text.slice(0, 120)}: ${result}`);
    assert.ok(result.message.startsWith(`${FILE}: SPIFFE bundle`), result.message);
    return;
  }
  // Whatever it accepts is a list of certificates, each from one x509-svid key of the text.
  for (const cert of result.certificates) assert.ok(cert instanceof X509Certificate);
  assert.ok(result.certificates.length <= (text.match(/x509-svid/g) ?? []).length);
}

describe('fuzz: SPIFFE bundle (JWKS) parser', () => {
  let pool: X509Certificate[];

  before(async () => {
    const ecRoot = await createRootCa({ commonName: 'Fuzz EC Root' });
    const rsaRoot = await createRootCa({ commonName: 'Fuzz RSA Root', keyType: 'rsa-2048' });
    const intermediate = await createIntermediateCa(ecRoot, { commonName: 'Fuzz Intermediate' });
    pool = [ecRoot, rsaRoot, intermediate].map((c) => new X509Certificate(c.certPem));
  });

  it('reads back exactly the certificates, sequence and refresh hint a bundle was written with', () => {
    const options = fc.record(
      { sequence: fc.nat({ max: Number.MAX_SAFE_INTEGER }), refreshHintSeconds: fc.nat({ max: 2 ** 40 }) },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(fc.array(fc.nat({ max: 2 }), { maxLength: 6 }), options, fc.nat({ max: 3 }), (picks, opts, jwt) => {
        const certs = picks.map((i) => pool[i] as X509Certificate);
        const doc = JSON.parse(formatSpiffeBundle(certs, opts));
        // JWT authorities interleaved are skipped without disturbing the order of the X.509 ones.
        for (let i = 0; i < jwt; i += 1)
          doc.keys.splice(i % (doc.keys.length + 1), 0, { kty: 'EC', use: 'jwt-svid', kid: `k${i}` });
        const bundle = parseSpiffeBundle(JSON.stringify(doc), FILE);
        assert.deepEqual(
          bundle.certificates.map((c) => c.fingerprint256),
          certs.map((c) => c.fingerprint256),
        );
        assert.equal(bundle.sequence, opts.sequence);
        assert.equal(bundle.refreshHintSeconds, opts.refreshHintSeconds);
      }),
      fuzzOptions(300),
    );
  });

  it('gives a clean error or a bundle for a written bundle with bytes inserted, deleted or replaced', () => {
    const valid = () => formatSpiffeBundle(pool, { sequence: 1 });
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(), fc.nat({ max: 8 }), tokenString([...JSON_TOKENS, ...MEMBER_TOKENS, 'A', '/'], 3)), {
          minLength: 1,
          maxLength: 4,
        }),
        (edits) => {
          let text = valid();
          for (const [at, cut, insert] of edits) {
            const i = at % (text.length + 1);
            text = text.slice(0, i) + insert + text.slice(i + cut);
          }
          assertCleanOutcome(text);
        },
      ),
      fuzzOptions(1500),
    );
  });

  it('gives a clean error or a bundle for arbitrary JSON shaped like a JWK Set', () => {
    const member = fc.oneof(
      fc.jsonValue({ maxDepth: 2 }),
      fc.constantFrom('x509-svid', 'jwt-svid', 'EC', 'RSA', '', 'AAAA'),
      fc.array(fc.oneof(fc.string({ maxLength: 8 }), fc.integer()), { maxLength: 3 }),
    );
    const key = fc.dictionary(fc.constantFrom('kty', 'use', 'x5c', 'kid', 'crv', 'x', 'y', 'n', 'e', 'other'), member, {
      maxKeys: 6,
    });
    const set = fc.record(
      {
        keys: fc.oneof(fc.array(fc.oneof(key, fc.jsonValue({ maxDepth: 1 })), { maxLength: 5 }), fc.jsonValue()),
        spiffe_sequence: fc.oneof(fc.integer(), fc.double(), fc.string({ maxLength: 4 })),
        spiffe_refresh_hint: fc.oneof(fc.nat(), fc.constant(-1), fc.constant('5m')),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(fc.oneof(set, fc.jsonValue({ maxDepth: 3 })), (value) => assertCleanOutcome(JSON.stringify(value))),
      fuzzOptions(2000),
    );
  });
});
