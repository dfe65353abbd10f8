import 'reflect-metadata';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isGatewayError } from '../../src/core/errors.ts';
import { type TrustBundle, trustBundleFromCertificates } from '../../src/identity/trust-bundle.ts';
import { verifyPeerSvid } from '../../src/identity/verify-svid.ts';
import {
  CA_EXTENSIONS,
  type OpensslCert,
  opensslIssue,
  opensslRoot,
  opensslVerify,
  svidExtensions,
} from './helpers/openssl-pki.ts';

const ID = 'spiffe://cluster.local/ns/shop/sa/web';

/**
 * Issue 10 item 6: the project's verifier is the gate on its own. Certificates are minted with the
 * openssl CLI; each refusal is checked against a control issued the same way without the defect.
 */
describe('verifier: unknown critical extensions and name constraints', () => {
  let dir: string;
  let root: OpensslCert;
  let bundle: TrustBundle;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'egw-constraints-'));
    root = opensslRoot(dir, 'Constraint Root');
    bundle = trustBundleFromCertificates('cluster.local', [root.x509], root.certPath);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** An intermediate with `extensions` on top of the CA basics, and an SVID leaf under it. */
  function chain(name: string, extensions: string[], leafSans: string[] = [], leafExtensions: string[] = []) {
    const intermediate = opensslIssue(dir, root, name, [...CA_EXTENSIONS, ...extensions]);
    const leaf = opensslIssue(dir, intermediate, `${name} leaf`, [...svidExtensions(ID, leafSans), ...leafExtensions]);
    return { intermediate, leaf, sent: [leaf.x509, intermediate.x509] };
  }

  const refusedWith = (sent: Parameters<typeof verifyPeerSvid>[0], code: string, message: RegExp) =>
    assert.throws(
      () => verifyPeerSvid(sent, bundle),
      (error: unknown) =>
        isGatewayError(error) && error.code === code && message.test(error.message) ? true : assert.fail(String(error)),
    );

  it('refuses an intermediate with an unknown critical extension, with its own code and the OID named', () => {
    const control = chain('Plain Intermediate', ['1.2.3.4=ASN1:NULL']);
    assert.equal(verifyPeerSvid(control.sent, bundle).spiffeId.uri, ID, 'the same extension, not critical, is fine');
    const marked = chain('Marked Intermediate', ['1.2.3.4=critical,ASN1:NULL']);
    refusedWith(
      marked.sent,
      'EGW_IDENTITY_CRITICAL_EXTENSION',
      /issuer "O=test, CN=Marked Intermediate" has critical extension 1\.2\.3\.4, which this verifier does not process/,
    );
    // OpenSSL agrees; before this check only its verdict refused the chain ("UNSPECIFIED").
    assert.match(opensslVerify(root, marked.intermediate, marked.leaf), /unsupported certificate extension|error 34/i);
    assert.match(opensslVerify(root, control.intermediate, control.leaf), /: OK/);
  });

  it('refuses a leaf with an unknown critical extension, and a critical certificate policy it does not process', () => {
    const ok = chain('Leaf Ext Intermediate', []);
    assert.ok(verifyPeerSvid(ok.sent, bundle));
    const leafMarked = opensslIssue(dir, ok.intermediate, 'marked leaf', [
      ...svidExtensions(ID),
      '1.2.3.4=critical,ASN1:NULL',
    ]);
    refusedWith(
      [leafMarked.x509, ok.intermediate.x509],
      'EGW_IDENTITY_CRITICAL_EXTENSION',
      /leaf "O=test, CN=marked leaf" has critical extension 1\.2\.3\.4/,
    );
    const policy = opensslIssue(dir, ok.intermediate, 'policy leaf', [
      ...svidExtensions(ID),
      'certificatePolicies = critical,1.3.6.1.4.1.99999.1',
    ]);
    refusedWith([policy.x509, ok.intermediate.x509], 'EGW_IDENTITY_CRITICAL_EXTENSION', /2\.5\.29\.32/);
  });

  it('refuses an anchor with an unknown critical extension when the bundle is loaded', () => {
    const odd = opensslIssue(dir, root, 'Odd Anchor', [...CA_EXTENSIONS, '1.2.3.4=critical,ASN1:NULL']);
    assert.ok(trustBundleFromCertificates('cluster.local', [root.x509], 'control'));
    assert.throws(
      () => trustBundleFromCertificates('cluster.local', [odd.x509], 'odd.pem'),
      (error: unknown) =>
        isGatewayError(error, 'EGW_PKI_FILE') && /odd\.pem: .*1\.2\.3\.4/.test((error as Error).message),
    );
  });

  it('enforces URI name constraints against the SPIFFE trust domain (permitted and excluded)', () => {
    const permitted = chain('Permits Cluster', ['nameConstraints = critical,permitted;URI:cluster.local']);
    assert.equal(verifyPeerSvid(permitted.sent, bundle).spiffeId.uri, ID);
    const elsewhere = chain('Permits Partner', ['nameConstraints = critical,permitted;URI:partner.example']);
    refusedWith(
      elsewhere.sent,
      'EGW_IDENTITY_NAME_CONSTRAINTS',
      /spiffe:\/\/cluster\.local\/ns\/shop\/sa\/web .* is outside the permitted partner\.example in the nameConstraints of CA "O=test, CN=Permits Partner"/,
    );
    const subdomainsOnly = chain('Permits Below', ['nameConstraints = critical,permitted;URI:.cluster.local']);
    refusedWith(subdomainsOnly.sent, 'EGW_IDENTITY_NAME_CONSTRAINTS', /outside the permitted \.cluster\.local/);
    const excluded = chain('Excludes Cluster', ['nameConstraints = critical,excluded;URI:cluster.local']);
    refusedWith(excluded.sent, 'EGW_IDENTITY_NAME_CONSTRAINTS', /is excluded by "cluster\.local"/);
    // OpenSSL reaches the same verdicts.
    assert.match(opensslVerify(root, permitted.intermediate, permitted.leaf), /: OK/);
    assert.match(opensslVerify(root, elsewhere.intermediate, elsewhere.leaf), /name constraint|error 47/i);
  });

  it('enforces DNS name constraints on the leaf DNS SANs, and a URI-only constraint leaves DNS names free', () => {
    const dns = ['nameConstraints = critical,permitted;DNS:svc.cluster.local'];
    const inside = chain('DNS Inside', dns, ['DNS:api.svc.cluster.local']);
    assert.ok(verifyPeerSvid(inside.sent, bundle));
    const outside = chain('DNS Outside', dns, ['DNS:api.evil.example']);
    refusedWith(
      outside.sent,
      'EGW_IDENTITY_NAME_CONSTRAINTS',
      /api\.evil\.example .* outside the permitted svc\.cluster\.local/,
    );
    const uriOnly = chain(
      'URI Only',
      ['nameConstraints = critical,permitted;URI:cluster.local'],
      ['DNS:anything.example'],
    );
    assert.ok(verifyPeerSvid(uriOnly.sent, bundle));
  });

  it('refuses a CA whose name constraints it cannot enforce (IP, directoryName), naming the form', () => {
    const control = chain('Enforceable', ['nameConstraints = critical,permitted;DNS:cluster.local']);
    assert.ok(verifyPeerSvid(control.sent, bundle));
    const ip = chain('IP Constrained', ['nameConstraints = critical,permitted;IP:10.0.0.0/255.0.0.0']);
    refusedWith(
      ip.sent,
      'EGW_IDENTITY_NAME_CONSTRAINTS_UNSUPPORTED',
      /CA "O=test, CN=IP Constrained" has a iPAddress name constraint; this verifier enforces only dNSName and URI/,
    );
    const dirName = chain('DN Constrained', [
      'nameConstraints = critical,permitted;dirName:dn_section',
      '[dn_section]',
      'O = test',
    ]);
    refusedWith(dirName.sent, 'EGW_IDENTITY_NAME_CONSTRAINTS_UNSUPPORTED', /directoryName/);
  });
});
