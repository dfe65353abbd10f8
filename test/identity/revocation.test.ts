import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isGatewayError } from '../../src/core/errors.ts';
import { crlStatuses, loadRevocation, withRevocation } from '../../src/identity/revocation.ts';
import { type TrustBundle, trustBundleFromCertificates } from '../../src/identity/trust-bundle.ts';
import { verifyPeerSvid } from '../../src/identity/verify-svid.ts';
import { createIntermediateCa, type IssuedCertificate } from '../../src/pki/issue-certificate.ts';
import { untrustedBecause } from '../../src/proxy/connection-trust.ts';
import type { GatewayState } from '../../src/proxy/gateway-state.ts';
import { createTestPki, type TestPki, type WrittenLeaf } from '../helpers/test-pki.ts';
import { createOpensslCa } from './helpers/openssl-ca.ts';

const chainOf = (client: WrittenLeaf, chain: readonly IssuedCertificate[]) => [
  new X509Certificate(client.leaf.certPem),
  ...chain.map((c) => new X509Certificate(c.certPem)),
];

/** CRLs minted with `openssl ca`, checked by the verifier in process (pkijs parse and signature). */
describe('CRL revocation (identity.crls, identity.crlRequired)', () => {
  let pki: TestPki;
  let intermediateBundle: TrustBundle;
  let rootBundle: TrustBundle;

  before(async () => {
    pki = await createTestPki();
    intermediateBundle = trustBundleFromCertificates(
      pki.trustDomain,
      [new X509Certificate(pki.intermediate.certPem)],
      pki.intermediatePath,
    );
    rootBundle = trustBundleFromCertificates(pki.trustDomain, [new X509Certificate(pki.root.certPem)], pki.rootPath);
  });
  after(() => pki.cleanup());

  const withCrls = async (bundle: TrustBundle, paths: string[], required = false) =>
    withRevocation(bundle, await loadRevocation(paths, bundle, required));

  it('refuses a revoked leaf with EGW_IDENTITY_REVOKED and accepts its unrevoked sibling (PEM CRL)', async () => {
    const ca = await createOpensslCa(pki.intermediate, join(pki.dir, 'ca-leaf'));
    const kept = await pki.workload('shop', 'web');
    const revoked = await pki.workload('shop', 'api');
    ca.revoke(revoked.leaf.certPem);
    const bundle = await withCrls(intermediateBundle, [ca.gencrl('leaf')], true);
    assert.deepEqual(
      crlStatuses(bundle.revocation).map((s) => s.status),
      ['valid'],
    );
    // Positive control: the same bundle, CRL and crlRequired accept a certificate it does not list.
    assert.equal(verifyPeerSvid(chainOf(kept, []), bundle).spiffeId.uri, 'spiffe://cluster.local/ns/shop/sa/web');
    assert.throws(
      () => verifyPeerSvid(chainOf(revoked, []), bundle),
      (error: unknown) =>
        isGatewayError(error, 'EGW_IDENTITY_REVOKED') &&
        /spiffe:\/\/cluster\.local\/ns\/shop\/sa\/api.*revoked at .*\(keyCompromise\) by the CRL of "O=test, CN=Test Mesh Intermediate"/.test(
          (error as Error).message,
        ),
    );
  });

  it('refuses every leaf under a revoked intermediate (DER CRL of the root)', async () => {
    const ca = await createOpensslCa(pki.root, join(pki.dir, 'ca-root'));
    const client = await pki.workload('shop', 'web');
    const empty = await withCrls(rootBundle, [ca.gencrl('none', { der: true })]);
    assert.equal(verifyPeerSvid(chainOf(client, [pki.intermediate]), empty).path.length, 3);
    ca.revoke(pki.intermediate.certPem, 'cACompromise');
    const revoking = await withCrls(rootBundle, [ca.gencrl('intermediate', { der: true })]);
    assert.throws(
      () => verifyPeerSvid(chainOf(client, [pki.intermediate]), revoking),
      (error: unknown) =>
        isGatewayError(error, 'EGW_IDENTITY_REVOKED') &&
        /"O=test, CN=Test Mesh Intermediate".*cACompromise/.test((error as Error).message),
    );
  });

  it('honours the root CRL revoking an intermediate that is itself in the bundle (the path ends at it)', async () => {
    const ca = await createOpensslCa(pki.root, join(pki.dir, 'ca-anchor'));
    const client = await pki.workload('shop', 'web');
    const both = trustBundleFromCertificates(
      pki.trustDomain,
      [new X509Certificate(pki.root.certPem), new X509Certificate(pki.intermediate.certPem)],
      pki.bundlePath,
    );
    const before = await withCrls(both, [ca.gencrl('anchor-none')]);
    assert.equal(verifyPeerSvid(chainOf(client, [pki.intermediate]), before).path.length, 2);
    ca.revoke(pki.intermediate.certPem, 'cACompromise');
    const after = await withCrls(both, [ca.gencrl('anchor-revoked')]);
    assert.throws(
      () => verifyPeerSvid(chainOf(client, [pki.intermediate]), after),
      (error: unknown) =>
        isGatewayError(error, 'EGW_IDENTITY_REVOKED') &&
        /trust anchor "O=test, CN=Test Mesh Intermediate" .*by the CRL of "O=test, CN=Test Mesh Root"/.test(
          (error as Error).message,
        ),
    );
  });

  it('ignores a CRL whose signature does not verify, reports it, and with crlRequired refuses its issuer', async () => {
    // Same subject as the real intermediate, another key: a forged CRL that tries to revoke a leaf.
    const impostor = await createIntermediateCa(pki.root, {
      commonName: 'Test Mesh Intermediate',
      organization: 'test',
    });
    const forger = await createOpensslCa(impostor, join(pki.dir, 'ca-forged'));
    const client = await pki.workload('shop', 'web');
    forger.revoke(client.leaf.certPem);
    const forged = forger.gencrl('forged');
    const optional = await withCrls(intermediateBundle, [forged]);
    const [status] = crlStatuses(optional.revocation);
    assert.equal(status?.status, 'defective');
    assert.match(status?.reason ?? '', /signature does not verify with the key of "O=test, CN=Test Mesh Intermediate"/);
    // Not trusted, so it revokes nothing: the leaf it lists is still accepted without crlRequired.
    assert.equal(
      verifyPeerSvid(chainOf(client, []), optional).leaf.sha256,
      verifyPeerSvid(chainOf(client, []), intermediateBundle).leaf.sha256,
    );
    const required = await withCrls(intermediateBundle, [forged], true);
    assert.throws(
      () => verifyPeerSvid(chainOf(client, []), required),
      (error: unknown) =>
        isGatewayError(error, 'EGW_IDENTITY_CRL_UNAVAILABLE') &&
        /signature does not verify/.test((error as Error).message),
    );
  });

  it('treats a CRL past nextUpdate as stale: reported, refused under crlRequired, still revoking', async () => {
    const ca = await createOpensslCa(pki.intermediate, join(pki.dir, 'ca-stale'));
    const client = await pki.workload('shop', 'web');
    const current = await withCrls(intermediateBundle, [ca.gencrl('current')], true);
    assert.ok(verifyPeerSvid(chainOf(client, []), current));
    const stalePath = ca.gencrl('stale', { lastUpdate: '20250101000000Z', nextUpdate: '20250102000000Z' });
    const stale = await withCrls(intermediateBundle, [stalePath], true);
    const [status] = crlStatuses(stale.revocation);
    assert.equal(status?.status, 'stale');
    assert.equal(status?.nextUpdate?.toISOString(), '2025-01-02T00:00:00.000Z');
    assert.throws(
      () => verifyPeerSvid(chainOf(client, []), stale),
      (error: unknown) =>
        isGatewayError(error, 'EGW_IDENTITY_CRL_UNAVAILABLE') && /past its nextUpdate/.test((error as Error).message),
    );
    // Without crlRequired a stale CRL is only reported; what it revoked stays revoked.
    const lenient = await withCrls(intermediateBundle, [stalePath]);
    assert.ok(verifyPeerSvid(chainOf(client, []), lenient));
    const revoked = await pki.workload('shop', 'api');
    ca.revoke(revoked.leaf.certPem);
    const staleRevoking = await withCrls(intermediateBundle, [
      ca.gencrl('stale2', { lastUpdate: '20250101000000Z', nextUpdate: '20250102000000Z' }),
    ]);
    assert.throws(
      () => verifyPeerSvid(chainOf(revoked, []), staleRevoking),
      (error: unknown) => isGatewayError(error, 'EGW_IDENTITY_REVOKED'),
    );
  });

  it('refuses, under crlRequired, a chain through an issuer that has no CRL configured', async () => {
    const ca = await createOpensslCa(pki.root, join(pki.dir, 'ca-root-only'));
    const client = await pki.workload('shop', 'web');
    const bundle = await withCrls(rootBundle, [ca.gencrl('root')], true);
    // The root's CRL covers the intermediate; the intermediate's own CRL (covering leaves) is missing.
    assert.throws(
      () => verifyPeerSvid(chainOf(client, [pki.intermediate]), bundle),
      (error: unknown) =>
        isGatewayError(error, 'EGW_IDENTITY_CRL_UNAVAILABLE') &&
        /issuer "O=test, CN=Test Mesh Intermediate" has no current, valid CRL \(none configured\)/.test(
          (error as Error).message,
        ),
    );
    const lenient = await withCrls(rootBundle, [ca.gencrl('root2')]);
    assert.ok(verifyPeerSvid(chainOf(client, [pki.intermediate]), lenient));
  });

  it('reads every CRL of a PEM file holding several, and fails the load on a file that is not a CRL', async () => {
    const leafCa = await createOpensslCa(pki.intermediate, join(pki.dir, 'ca-multi-int'));
    const rootCa = await createOpensslCa(pki.root, join(pki.dir, 'ca-multi-root'));
    const file = join(pki.dir, 'both.crl.pem');
    writeFileSync(file, `${readFileSync(rootCa.gencrl('r'), 'utf8')}${readFileSync(leafCa.gencrl('i'), 'utf8')}`);
    const bundle = trustBundleFromCertificates(
      pki.trustDomain,
      [new X509Certificate(pki.root.certPem), new X509Certificate(pki.intermediate.certPem)],
      pki.bundlePath,
    );
    const state = await loadRevocation([file], bundle, true);
    assert.deepEqual(
      crlStatuses(state).map((s) => [s.source.endsWith('#1') || s.source.endsWith('#2'), s.status, s.issuer]),
      [
        [true, 'valid', 'O=test, CN=Test Mesh Root'],
        [true, 'valid', 'O=test, CN=Test Mesh Intermediate'],
      ],
    );
    await assert.rejects(loadRevocation([pki.rootPath], bundle, false), (error: unknown) =>
      isGatewayError(error, 'EGW_PKI_FILE'),
    );
  });

  it('loads a CRL of 5 000 entries (asn1js stopped at 10 000 ASN.1 nodes, about 2 000 entries)', async () => {
    const ca = await createOpensslCa(pki.intermediate, join(pki.dir, 'ca-big'));
    const kept = await pki.workload('shop', 'web');
    const revoked = await pki.workload('shop', 'api');
    // openssl ca's own database format: 4 999 revoked serials, then the leaf's as the last entry.
    const row = (serial: string) => `R\t301231235959Z\t251201000000Z,superseded\t${serial}\tunknown\t/CN=x\n`;
    let rows = '';
    for (let i = 0; i < 4999; i++) rows += row((0x100000 + i).toString(16).toUpperCase());
    writeFileSync(join(ca.dir, 'index.txt'), rows);
    appendFileSync(join(ca.dir, 'index.txt'), row(revoked.leaf.cert.serialNumber.toUpperCase()));
    const bigPath = ca.gencrl('big');
    const bundle = await withCrls(intermediateBundle, [bigPath], true);
    assert.equal(bundle.revocation?.crls[0]?.revoked.size, 5000);
    // A reload with the same bytes and anchors reuses the parsed CRL; other anchors parse it again.
    const again = await loadRevocation([bigPath], intermediateBundle, true);
    assert.equal(again.crls[0], bundle.revocation?.crls[0]);
    const other = await loadRevocation([bigPath], rootBundle, false);
    assert.notEqual(other.crls[0], bundle.revocation?.crls[0]);
    assert.equal(crlStatuses(other)[0]?.status, 'defective');
    assert.ok(verifyPeerSvid(chainOf(kept, []), bundle));
    assert.throws(
      () => verifyPeerSvid(chainOf(revoked, []), bundle),
      (error: unknown) => isGatewayError(error, 'EGW_IDENTITY_REVOKED') && /superseded/.test((error as Error).message),
    );
  });

  // untrustedBecause reads only the state's trust bundle.
  const stateOf = (trustBundle: TrustBundle) => ({ trustBundle }) as unknown as GatewayState;

  it('untrustedBecause: an identity proven before a CRL arrived is no longer trusted under the new state', async () => {
    const ca = await createOpensslCa(pki.intermediate, join(pki.dir, 'ca-recheck'));
    const client = await pki.workload('shop', 'web');
    const sent = chainOf(client, [pki.intermediate]);
    const chain = sent.map((cert) => Buffer.from(cert.raw));
    const peer = verifyPeerSvid(sent, intermediateBundle);
    const now = new Date();
    assert.equal(untrustedBecause(peer, chain, stateOf(intermediateBundle), now), undefined, 'positive control');
    ca.revoke(client.leaf.certPem);
    const next = await withCrls(intermediateBundle, [ca.gencrl('recheck')]);
    assert.equal(untrustedBecause(peer, chain, stateOf(next), now)?.code, 'EGW_IDENTITY_REVOKED');
    // The anchor removed (the new bundle trusts another CA only): no longer trusted either.
    const other = await createIntermediateCa(pki.root, { commonName: 'Other Intermediate' });
    const elsewhere = trustBundleFromCertificates(pki.trustDomain, [new X509Certificate(other.certPem)], 'other');
    assert.equal(untrustedBecause(peer, chain, stateOf(elsewhere), now)?.code, 'EGW_IDENTITY_CHAIN_UNTRUSTED');
    // After notAfter (time is part of the state).
    const later = new Date(Date.now() + 400 * 86_400_000);
    assert.equal(untrustedBecause(peer, chain, stateOf(intermediateBundle), later)?.code, 'EGW_IDENTITY_EXPIRED');
  });

  it('untrustedBecause: under crlRequired a missing CRL refuses new handshakes, not what is open', async () => {
    const client = await pki.workload('shop', 'cart');
    const sent = chainOf(client, [pki.intermediate]);
    const peer = verifyPeerSvid(sent, intermediateBundle);
    // A CRL of the root only: defective under a bundle of the intermediate, so no CRL for its issuer.
    const rootCa = await createOpensslCa(pki.root, join(pki.dir, 'ca-required'));
    const required = await withCrls(intermediateBundle, [rootCa.gencrl('root')], true);
    assert.throws(
      () => verifyPeerSvid(sent, required),
      (error: unknown) => isGatewayError(error, 'EGW_IDENTITY_CRL_UNAVAILABLE'),
    );
    const chain = sent.map((cert) => Buffer.from(cert.raw));
    assert.equal(untrustedBecause(peer, chain, stateOf(required), new Date()), undefined);
  });
});
