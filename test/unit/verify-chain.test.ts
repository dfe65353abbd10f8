import 'reflect-metadata';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { describe, it } from 'node:test';
import * as x509 from '@peculiar/x509';
import { isGatewayError } from '../../src/core/errors.ts';
import { trustBundleFromCertificates } from '../../src/identity/trust-bundle.ts';
import { verifyPeerSvid } from '../../src/identity/verify-svid.ts';
import { createIntermediateCa, createRootCa, issueLeaf } from '../../src/pki/issue-certificate.ts';
import { generateKeyPair, signingAlgorithmFor } from '../../src/pki/key-pair.ts';

const node = (pem: string) => new X509Certificate(pem);

describe('verifyPeerSvid path search', () => {
  it('refuses quickly a chain of look-alike CAs that all verify each other (path-search blow-up)', async () => {
    const root = await createRootCa({ commonName: 'Real Root' });
    const intermediate = await createIntermediateCa(root, { commonName: 'Real Intermediate' });
    const bundle = trustBundleFromCertificates('cluster.local', [node(intermediate.certPem)], 'test');
    // Eight self-issued CAs named CN=X, all with one key: each one verifies every other.
    const keys = await generateKeyPair('ecdsa-p256');
    const lookAlikes: string[] = [];
    for (let i = 0; i < 8; i++) {
      const cert = await x509.X509CertificateGenerator.create({
        subject: 'CN=X',
        issuer: 'CN=X',
        publicKey: keys.publicKey,
        signingKey: keys.privateKey,
        signingAlgorithm: signingAlgorithmFor(keys.privateKey),
        notBefore: new Date(Date.now() - 60_000),
        notAfter: new Date(Date.now() + 3_600_000),
        serialNumber: `0${i + 1}`,
        extensions: [
          new x509.BasicConstraintsExtension(true, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true),
        ],
      });
      lookAlikes.push(cert.toString('pem'));
    }
    const leaf = await issueLeaf(
      { cert: new x509.X509Certificate(lookAlikes[0] as string), keys, certPem: lookAlikes[0] as string },
      { spiffeIds: ['spiffe://cluster.local/ns/a/sa/b'] },
    );
    // Unbounded, this search took 6 s for 8 certificates and grows factorially; the budget stops it.
    assert.throws(
      () => verifyPeerSvid([node(leaf.certPem), ...lookAlikes.map(node)], bundle),
      (error: unknown) =>
        isGatewayError(error, 'EGW_IDENTITY_CHAIN_UNTRUSTED') &&
        /within 32 signature checks/.test((error as Error).message),
    );
  });

  it('refuses more presented certificates than a path can use', async () => {
    const root = await createRootCa({ commonName: 'Root' });
    const intermediate = await createIntermediateCa(root, { commonName: 'Intermediate' });
    const bundle = trustBundleFromCertificates('cluster.local', [node(intermediate.certPem)], 'test');
    const leaf = await issueLeaf(intermediate, { spiffeIds: ['spiffe://cluster.local/ns/a/sa/b'] });
    const padding = Array.from({ length: 9 }, () => node(intermediate.certPem));
    assert.throws(() => verifyPeerSvid([node(leaf.certPem), ...padding], bundle), /at most 9 are accepted/);
    assert.equal(
      verifyPeerSvid([node(leaf.certPem), node(intermediate.certPem)], bundle).spiffeId.uri,
      'spiffe://cluster.local/ns/a/sa/b',
    );
  });
});
