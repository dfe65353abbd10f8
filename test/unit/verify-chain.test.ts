import 'reflect-metadata';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, type KeyObject, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import * as x509 from '@peculiar/x509';
import { isGatewayError } from '../../src/core/errors.ts';
import { DEFAULT_CHAIN_LIMITS } from '../../src/identity/chain-limits.ts';
import { verificationCost } from '../../src/identity/key-policy.ts';
import { trustBundleFromCertificates } from '../../src/identity/trust-bundle.ts';
import { factsCacheUsage, verifyPeerSvid } from '../../src/identity/verify-svid.ts';
import { createIntermediateCa, createRootCa, issueLeaf } from '../../src/pki/issue-certificate.ts';
import { generateKeyPair, signingAlgorithmFor } from '../../src/pki/key-pair.ts';
import { junkCertificates, lookAlikeChain } from '../helpers/hostile-clients.ts';

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
    // P-256 checks cost 1 unit each, so the default budget of 32 units is 32 checks.
    const stats = { signatureChecks: 0, work: 0 };
    assert.throws(
      () => verifyPeerSvid([node(leaf.certPem), ...lookAlikes.map(node)], bundle, new Date(), stats),
      (error: unknown) =>
        isGatewayError(error, 'EGW_IDENTITY_VERIFY_BUDGET') &&
        /32 signature checks done/.test((error as Error).message),
    );
    assert.deepEqual(stats, { signatureChecks: 32, work: 32 });
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

describe('verifyPeerSvid bounds before trust (issue 9)', () => {
  it('refuses certificates over the size and count limits before parsing them, and caches none of them', async () => {
    const root = await createRootCa({ commonName: 'Root' });
    const intermediate = await createIntermediateCa(root, { commonName: 'Intermediate' });
    const bundle = trustBundleFromCertificates('cluster.local', [node(intermediate.certPem)], 'test', {
      ...DEFAULT_CHAIN_LIMITS,
      maxChainBytes: 20_000,
    });
    const leaf = await issueLeaf(intermediate, { spiffeIds: ['spiffe://cluster.local/ns/a/sa/b'] });
    const good = [node(leaf.certPem).raw, node(intermediate.certPem).raw];
    // Positive control: the real chain, as DER the way TLS delivers it, is accepted and cached.
    assert.equal(verifyPeerSvid(good, bundle).spiffeId.uri, 'spiffe://cluster.local/ns/a/sa/b');
    const cached = factsCacheUsage();
    assert.ok(cached.entries >= 1);
    const junk = await junkCertificates(95_000);
    const big = new X509Certificate(junk.next()).raw;
    assert.throws(
      () => verifyPeerSvid([big], bundle),
      (e: unknown) => isGatewayError(e, 'EGW_IDENTITY_CHAIN_TOO_LARGE') && /is \d+ bytes/.test((e as Error).message),
    );
    // Not DER at all: refused on its length, so never handed to a parser.
    assert.throws(() => verifyPeerSvid([Buffer.alloc(20_000)], bundle), /certificate #1 is 20000 bytes/);
    const padded = [...good, ...Array.from({ length: 7 }, () => Buffer.alloc(3_000))];
    assert.throws(() => verifyPeerSvid(padded, bundle), /chain is \d+ bytes; at most 20000/);
    assert.deepEqual(factsCacheUsage(), cached);
  });

  it('refuses keys outside the key policy before any signature check', async () => {
    const root = await createRootCa({ commonName: 'Real Root' });
    const intermediate = await createIntermediateCa(root, { commonName: 'Real Intermediate' });
    const bundle = trustBundleFromCertificates('cluster.local', [node(intermediate.certPem)], 'test');
    const leaf = await issueLeaf(intermediate, { spiffeIds: ['spiffe://cluster.local/ns/a/sa/b'] });
    // Positive control: the counter counts (one check: leaf against the anchor).
    const control = { signatureChecks: 0, work: 0 };
    verifyPeerSvid([node(leaf.certPem)], bundle, new Date(), control);
    assert.equal(control.signatureChecks, 1);
    // The issue's look-alike chain with a key that is fast to make: RSA-2048 with a 64-bit exponent.
    const dir = mkdtempSync(join(tmpdir(), 'egw-keypolicy-'));
    try {
      const keyPath = join(dir, 'ca.key');
      execFileSync(
        'openssl',
        ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048'].concat([
          '-pkeyopt',
          'rsa_keygen_pubexp:18446744073709551557',
          '-out',
          keyPath,
        ]),
      );
      const { chainPath } = lookAlikeChain(dir, keyPath);
      const chain = readFileSync(chainPath, 'utf8')
        .split(/(?<=-----END CERTIFICATE-----\n)/)
        .filter(Boolean);
      assert.equal(chain.length, 9);
      const stats = { signatureChecks: 0, work: 0 };
      assert.throws(
        () => verifyPeerSvid(chain.map(node), bundle, new Date(), stats),
        (e: unknown) => isGatewayError(e, 'EGW_IDENTITY_KEY_POLICY') && /exponent/.test((e as Error).message),
      );
      assert.equal(stats.signatureChecks, 0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('weights the work budget by key size', () => {
    const cost = (options: Parameters<typeof generateKeyPairSync>[1]) =>
      verificationCost(
        (generateKeyPairSync as (t: string, o: unknown) => { publicKey: KeyObject })('rsa', options).publicKey,
        'k',
      );
    assert.equal(cost({ modulusLength: 2048 }), 1);
    assert.equal(cost({ modulusLength: 4096 }), 4);
    assert.throws(() => cost({ modulusLength: 1024 }), /RSA-1024/);
    const p521 = generateKeyPairSync('ec', { namedCurve: 'P-521' }).publicKey;
    assert.throws(() => verificationCost(p521, 'k'), /EC curve secp521r1/);
    assert.equal(verificationCost(generateKeyPairSync('ed25519').publicKey, 'k'), 1);
  });
});
