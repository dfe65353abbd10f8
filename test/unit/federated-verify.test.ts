import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { before, describe, it } from 'node:test';
import { isGatewayError } from '../../src/core/errors.ts';
import { bundleForDomain, trustBundleFromCertificates, withFederated } from '../../src/identity/trust-bundle.ts';
import { verifyPeerSvid } from '../../src/identity/verify-svid.ts';
import {
  createIntermediateCa,
  createRootCa,
  type IssuedCertificate,
  issueLeaf,
} from '../../src/pki/issue-certificate.ts';

const node = (c: IssuedCertificate) => new X509Certificate(c.certPem);

/** The verifier alone (no OpenSSL): each SVID is checked against its own trust domain's anchors. */
describe('verifyPeerSvid with federated trust domains', () => {
  let cluster: IssuedCertificate;
  let partner: IssuedCertificate;
  let bundle: ReturnType<typeof withFederated>;
  const chain = async (issuer: IssuedCertificate, id: string) => [
    node(await issueLeaf(issuer, { spiffeIds: [id] })),
    node(issuer),
  ];
  function refusal(sent: X509Certificate[]): string {
    try {
      verifyPeerSvid(sent, bundle);
    } catch (error) {
      assert.ok(isGatewayError(error), String(error));
      return error.code;
    }
    assert.fail('accepted');
  }

  before(async () => {
    // Same names on both sides: only the keys tell the two meshes apart.
    cluster = await createIntermediateCa(await createRootCa({ commonName: 'Mesh Root' }), { commonName: 'Mesh CA' });
    partner = await createIntermediateCa(await createRootCa({ commonName: 'Mesh Root' }), { commonName: 'Mesh CA' });
    bundle = withFederated(trustBundleFromCertificates('cluster.local', [node(cluster)], 'cluster.pem'), [
      trustBundleFromCertificates('partner.example', [node(partner)], 'partner.jwks.json'),
    ]);
  });

  it('accepts each domain’s SVID against its own anchors and ends the path there', async () => {
    const own = verifyPeerSvid(await chain(cluster, 'spiffe://cluster.local/ns/a/sa/b'), bundle);
    assert.equal(own.spiffeId.trustDomain, 'cluster.local');
    assert.equal(own.path.at(-1)?.node.fingerprint256, node(cluster).fingerprint256);
    const theirs = verifyPeerSvid(await chain(partner, 'spiffe://partner.example/ns/a/sa/b'), bundle);
    assert.equal(theirs.spiffeId.uri, 'spiffe://partner.example/ns/a/sa/b');
    assert.equal(theirs.path.at(-1)?.node.fingerprint256, node(partner).fingerprint256);
    assert.equal(bundleForDomain(bundle, 'partner.example')?.source, 'partner.jwks.json');
  });

  it('refuses an SVID whose chain ends in another trust domain’s anchors, both ways', async () => {
    assert.equal(refusal(await chain(cluster, 'spiffe://partner.example/ns/a/sa/b')), 'EGW_IDENTITY_CHAIN_UNTRUSTED');
    assert.equal(refusal(await chain(partner, 'spiffe://cluster.local/ns/a/sa/b')), 'EGW_IDENTITY_CHAIN_UNTRUSTED');
  });

  it('refuses an unconfigured trust domain as with one domain, and a second bundle for one domain', async () => {
    assert.equal(refusal(await chain(cluster, 'spiffe://other.example/ns/a/sa/b')), 'EGW_IDENTITY_TRUST_DOMAIN');
    assert.equal(refusal(await chain(partner, 'spiffe://other.example/ns/a/sa/b')), 'EGW_IDENTITY_CHAIN_UNTRUSTED');
    const own = trustBundleFromCertificates('cluster.local', [node(cluster)], 'a.pem');
    assert.throws(
      () => withFederated(own, [trustBundleFromCertificates('cluster.local', [node(partner)], 'b.pem')]),
      /b\.pem: trust domain cluster\.local has a bundle already/,
    );
  });
});
