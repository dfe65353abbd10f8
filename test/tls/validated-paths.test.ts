import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { describe, it } from 'node:test';
import { trustBundleFromCertificates } from '../../src/identity/trust-bundle.ts';
import { verifyPeerSvid } from '../../src/identity/verify-svid.ts';
import { createTestPki } from '../helpers/test-pki.ts';

const der = (pem: string) => new X509Certificate(pem).raw;

describe('validated-path cache (cheaper repeat handshakes)', () => {
  it('a cached chain still has its validity checked, and a new bundle does not reuse it', async () => {
    const pki = await createTestPki();
    const other = await createTestPki();
    try {
      const { leaf } = await pki.workload('bookinfo', 'productpage');
      const chain = [der(leaf.certPem), der(pki.intermediate.certPem)];
      const bundle = trustBundleFromCertificates('cluster.local', [new X509Certificate(pki.root.certPem)], 'root');
      const first = verifyPeerSvid(chain, bundle);
      assert.equal(first.spiffeId.uri, 'spiffe://cluster.local/ns/bookinfo/sa/productpage');
      assert.equal(first.path.length, 3, 'leaf, intermediate, root');
      assert.equal(verifyPeerSvid(chain, bundle), first, 'the same DER against the same bundle is a cache hit');

      const later = new Date(leaf.cert.notAfter.getTime() + 1000);
      assert.throws(() => verifyPeerSvid(chain, bundle, later), { code: 'EGW_IDENTITY_EXPIRED' });
      const intermediateExpired = new Date(pki.intermediate.cert.notAfter.getTime() + 1000);
      assert.throws(() => verifyPeerSvid(chain, bundle, intermediateExpired), { code: 'EGW_IDENTITY_EXPIRED' });

      const rotated = trustBundleFromCertificates('cluster.local', [new X509Certificate(other.root.certPem)], 'other');
      assert.throws(() => verifyPeerSvid(chain, rotated), { code: 'EGW_IDENTITY_CHAIN_UNTRUSTED' });
      const otherDomain = trustBundleFromCertificates('example.org', [new X509Certificate(pki.root.certPem)], 'root');
      assert.throws(() => verifyPeerSvid(chain, otherDomain), { code: 'EGW_IDENTITY_TRUST_DOMAIN' });
    } finally {
      pki.cleanup();
      other.cleanup();
    }
  });
});
