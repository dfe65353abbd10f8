import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { before, describe, it } from 'node:test';
import { isGatewayError } from '../../src/core/errors.ts';
import { formatSpiffeBundle, looksLikeSpiffeBundle, parseSpiffeBundle } from '../../src/identity/spiffe-bundle.ts';
import { parseBundleText } from '../../src/identity/trust-bundle.ts';
import { createRootCa, type IssuedCertificate } from '../../src/pki/issue-certificate.ts';

const FILE = '/etc/egw/partner.jwks.json';

/** The EGW_PKI_FILE message `parseSpiffeBundle` throws for `text`; fails the test if it parses. */
function refusal(text: string): string {
  try {
    parseSpiffeBundle(text, FILE);
  } catch (error) {
    assert.ok(isGatewayError(error, 'EGW_PKI_FILE'), String(error));
    return (error as Error).message;
  }
  assert.fail(`accepted: ${text.slice(0, 200)}`);
}

describe('SPIFFE bundle (JWKS) parser', () => {
  let ec: IssuedCertificate;
  let rsa: IssuedCertificate;
  let ecCert: X509Certificate;
  let rsaCert: X509Certificate;
  /** A well-formed bundle's document, for tests to break one field of. */
  const document = () => JSON.parse(formatSpiffeBundle([ecCert], { sequence: 7, refreshHintSeconds: 300 }));

  before(async () => {
    ec = await createRootCa({ commonName: 'Partner EC Root' });
    rsa = await createRootCa({ commonName: 'Partner RSA Root', keyType: 'rsa-2048' });
    ecCert = new X509Certificate(ec.certPem);
    rsaCert = new X509Certificate(rsa.certPem);
  });

  it('reads back the certificates, sequence and refresh hint it was written with (EC and RSA keys)', () => {
    const text = formatSpiffeBundle([ecCert, rsaCert], { sequence: 3, refreshHintSeconds: 2_419_200 });
    assert.equal(looksLikeSpiffeBundle(text), true);
    const bundle = parseSpiffeBundle(text, FILE);
    assert.deepEqual(
      bundle.certificates.map((c) => c.fingerprint256),
      [ecCert.fingerprint256, rsaCert.fingerprint256],
    );
    assert.equal(bundle.sequence, 3);
    assert.equal(bundle.refreshHintSeconds, 2_419_200);
    // Without the optional members: nothing invented.
    const bare = parseSpiffeBundle(formatSpiffeBundle([ecCert]), FILE);
    assert.equal(bare.sequence, undefined);
    assert.equal(bare.refreshHintSeconds, undefined);
  });

  it('skips jwt-svid keys and keys of an unknown or missing use, as the SPIFFE bundle standard says', () => {
    const doc = document();
    doc.keys.push(
      { kty: 'EC', use: 'jwt-svid', kid: 'k1', crv: 'P-256', x: 'AAAA', y: 'AAAA' },
      { kty: 'EC', use: 'future-svid' },
      { kty: 'EC' },
    );
    const bundle = parseSpiffeBundle(JSON.stringify(doc), FILE);
    assert.deepEqual(
      bundle.certificates.map((c) => c.fingerprint256),
      [ecCert.fingerprint256],
    );
    // A bundle of JWT keys only holds no X.509 authority (every X509-SVID of that domain is untrusted).
    const jwtOnly = parseSpiffeBundle(JSON.stringify({ keys: [{ kty: 'EC', use: 'jwt-svid', kid: 'a' }] }), FILE);
    assert.equal(jwtOnly.certificates.length, 0);
  });

  it('is chosen by content: PEM text still parses as PEM, JSON as a SPIFFE bundle', () => {
    assert.equal(parseBundleText(ec.certPem, 'a.pem')[0]?.fingerprint256, ecCert.fingerprint256);
    assert.equal(
      parseBundleText(`\n  ${formatSpiffeBundle([rsaCert])}`, 'b.json')[0]?.fingerprint256,
      rsaCert.fingerprint256,
    );
  });

  it('refuses a malformed x509-svid key, naming the file and the key index', () => {
    // Positive control: the unbroken document parses.
    assert.equal(parseSpiffeBundle(JSON.stringify(document()), FILE).certificates.length, 1);
    const broken: Array<[string, (key: Record<string, unknown>) => void, RegExp]> = [
      ['kid set', (k) => Object.assign(k, { kid: 'x' }), /keys\[1\]: kid must not be set/],
      ['no x5c', (k) => delete k.x5c, /keys\[1\]: x5c must hold exactly one/],
      [
        'two x5c',
        (k) => (k.x5c as string[]).push((k.x5c as string[])[0] as string),
        /keys\[1\]: x5c must hold exactly/,
      ],
      ['x5c not a string', (k) => Object.assign(k, { x5c: [42] }), /keys\[1\]\.x5c\[0\]: not a standard base64/],
      ['base64url', (k) => Object.assign(k, { x5c: ['ab-_'] }), /keys\[1\]\.x5c\[0\]: not a standard base64/],
      ['not DER', (k) => Object.assign(k, { x5c: ['AAAA'] }), /keys\[1\]\.x5c\[0\]: not a DER certificate/],
      ['no kty', (k) => delete k.kty, /keys\[1\]: kty is missing/],
      ['kty lies', (k) => Object.assign(k, { kty: 'RSA' }), /keys\[1\]: kty "RSA" but the certificate key is EC/],
      ['x lies', (k) => Object.assign(k, { x: 'AAAA' }), /keys\[1\]: x does not match/],
    ];
    for (const [what, breakKey, expected] of broken) {
      const doc = document();
      const good = structuredClone(doc.keys[0]);
      const bad = structuredClone(doc.keys[0]);
      breakKey(bad);
      doc.keys = [good, bad];
      const message = refusal(JSON.stringify(doc));
      assert.match(message, new RegExp(`^${FILE.replace(/[./]/g, '\\$&')}: SPIFFE bundle`), what);
      assert.match(message, expected, what);
    }
  });

  it('refuses a certificate that parses but whose public key does not (regression: found by the fuzz test)', () => {
    const spki = ecCert.publicKey.export({ type: 'spki', format: 'der' });
    const raw = Buffer.from(ecCert.raw);
    const at = raw.indexOf(spki);
    assert.ok(at > 0);
    raw[at + spki.length - 65] = 0x05; // the EC point's format byte: 0x05 is no point encoding (0x02-0x04, 0x06-0x07 are)
    const broken = new X509Certificate(raw);
    assert.throws(() => broken.publicKey, /decode error/);
    const doc = document();
    // Positive control: the unbroken key parses.
    assert.equal(parseSpiffeBundle(JSON.stringify(doc), FILE).certificates.length, 1);
    doc.keys[0].x5c = [raw.toString('base64')];
    assert.match(refusal(JSON.stringify(doc)), /keys\[0\]\.x5c\[0\]: the public key cannot be read/);
  });

  it('refuses a document that is not a bundle, and bad sequence or refresh hint members', () => {
    assert.equal(parseSpiffeBundle('{"keys":[]}', FILE).certificates.length, 0);
    assert.match(refusal('{"keys": ['), /not JSON/);
    assert.match(refusal('[]'), /expected a JSON object/);
    assert.match(refusal('{"keys": {}}'), /"keys" must be an array/);
    assert.match(refusal('{}'), /"keys" must be an array/);
    assert.match(refusal('{"keys": [null]}'), /keys\[0\]: not an object/);
    assert.match(refusal('{"keys": [{"use": 1}]}'), /keys\[0\]: use must be a string/);
    assert.match(refusal('{"keys": [], "spiffe_sequence": -1}'), /spiffe_sequence must be a non-negative integer/);
    assert.match(refusal('{"keys": [], "spiffe_refresh_hint": "5m"}'), /spiffe_refresh_hint must be a non-negative/);
  });

  it('bounds what an untrusted file can make it hold: file size, key count, certificate size', () => {
    assert.match(refusal(`{"keys": [], "pad": "${'a'.repeat(1024 * 1024)}"}`), /larger than 1048576 bytes/);
    const many = { keys: Array.from({ length: 257 }, () => ({ kty: 'EC', use: 'jwt-svid' })) };
    assert.match(refusal(JSON.stringify(many)), /more than 256 keys/);
    // Positive control for the count: 256 keys are fine.
    assert.equal(parseSpiffeBundle(JSON.stringify({ keys: many.keys.slice(1) }), FILE).certificates.length, 0);
    const doc = document();
    doc.keys[0].x5c = ['A'.repeat(65_540)];
    assert.match(refusal(JSON.stringify(doc)), /keys\[0\]\.x5c\[0\]: not a standard base64 string of at most 64 KiB/);
  });
});
