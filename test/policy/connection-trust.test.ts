import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { trustBundleFromCertificates } from '../../src/identity/trust-bundle.ts';
import { verifyPeerSvid } from '../../src/identity/verify-svid.ts';
import type { IssuedCertificate } from '../../src/pki/issue-certificate.ts';
import { untrustedBecause } from '../../src/proxy/connection-trust.ts';
import type { GatewayState } from '../../src/proxy/gateway-state.ts';
import { createTestPki, type TestPki } from '../helpers/test-pki.ts';

const der = (cert: IssuedCertificate) => Buffer.from(new X509Certificate(cert.certPem).raw);
const stateTrusting = (trustDomain: string, ...anchors: IssuedCertificate[]) =>
  ({
    trustBundle: trustBundleFromCertificates(
      trustDomain,
      anchors.map((a) => new X509Certificate(a.certPem)),
      'test',
    ),
  }) as unknown as GatewayState;

describe('untrustedBecause: is an established identity still trusted under a new state', () => {
  let pki: TestPki;
  let other: TestPki;
  before(async () => {
    pki = await createTestPki();
    other = await createTestPki();
  });
  after(() => {
    pki.cleanup();
    other.cleanup();
  });

  it('keeps trusting under the same anchors and under the root above them; refuses another CA', async () => {
    const { leaf } = await pki.workload('bookinfo', 'productpage');
    const chain = [der(leaf), der(pki.intermediate)];
    const handshake = stateTrusting(pki.trustDomain, pki.intermediate);
    const peer = verifyPeerSvid(chain, handshake.trustBundle);
    const now = new Date();
    assert.equal(untrustedBecause(peer, chain, handshake, now), undefined, 'positive control');
    // The intermediate was the anchor; with only the root trusted, the sent intermediate leads there.
    assert.equal(untrustedBecause(peer, chain, stateTrusting(pki.trustDomain, pki.root), now), undefined);
    const removed = untrustedBecause(peer, chain, stateTrusting(pki.trustDomain, other.intermediate), now);
    assert.equal(removed?.code, 'EGW_IDENTITY_CHAIN_UNTRUSTED');
  });

  it('refuses once the leaf has expired, and in another trust domain', async () => {
    const notAfter = new Date(Date.now() + 60_000);
    const { leaf } = await pki.workload('bookinfo', 'reviews', { notAfter });
    const chain = [der(leaf), der(pki.intermediate)];
    const state = stateTrusting(pki.trustDomain, pki.intermediate);
    const peer = verifyPeerSvid(chain, state.trustBundle);
    assert.equal(untrustedBecause(peer, chain, state, new Date()), undefined, 'positive control');
    const later = new Date(notAfter.getTime() + 1000);
    assert.equal(untrustedBecause(peer, chain, state, later)?.code, 'EGW_IDENTITY_EXPIRED');
    const renamed = untrustedBecause(peer, chain, stateTrusting('other.example', pki.intermediate), new Date());
    assert.equal(renamed?.code, 'EGW_IDENTITY_TRUST_DOMAIN');
  });
});
