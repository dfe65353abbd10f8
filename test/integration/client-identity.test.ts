import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { KeyUsage } from '../../src/pki/certificate-facts.ts';
import { createIntermediateCa, createRootCa } from '../../src/pki/issue-certificate.ts';
import { curlViaGateway } from '../helpers/curl.ts';
import { type GatewayFixture, startGatewayFixture } from '../helpers/gateway-fixture.ts';
import { sClient } from '../helpers/openssl-client.ts';
import type { TestGateway } from '../helpers/test-gateway.ts';
import type { TestPki } from '../helpers/test-pki.ts';

const HOUR = 3_600_000;

/**
 * Every way a client certificate must be refused, driven with real curl and openssl s_client
 * against a gateway whose only trust anchor is the mesh intermediate (no root).
 */
describe('client identity (mTLS with an intermediate-only trust anchor)', () => {
  let pki: TestPki;
  let gw: TestGateway;
  let echoUrl: string;
  let fixture: GatewayFixture;

  before(async () => {
    fixture = await startGatewayFixture(() => ({
      listeners: [{ name: 'egress', listen: '127.0.0.1:0', mode: 'connect' }],
      rules: [{ name: 'any-workload', to: { cidrs: ['127.0.0.0/8'] }, action: 'allow' }],
      // A table of refusals from one source: the source penalty (test/attacks/handshake-penalty) would end it early.
      limits: { handshakeFailuresPerSource: 0 },
    }));
    ({ pki, gw } = fixture);
    echoUrl = `http://127.0.0.1:${fixture.echoPort}/`;
  });
  after(async () => {
    await fixture?.close();
  });

  /** Connects with curl and returns the audit record the gateway wrote for that connection. */
  async function refusedWith(certPath: string, keyPath: string): Promise<string> {
    const before = gw.records.length;
    const result = await curlViaGateway(
      gw.port('egress'),
      { certPath, keyPath, leafOnlyPath: certPath, leaf: undefined as never },
      pki.rootPath,
      echoUrl,
      ['-p'],
    );
    assert.notEqual(result.code, 0, 'curl must fail');
    const record = await gw.waitForRecord((r) => gw.records.indexOf(r) >= before && r.action === 'identity-rejected');
    return record.code ?? '';
  }

  it('accepts a workload chain leaf + intermediate', async () => {
    const client = await pki.workload('bookinfo', 'productpage');
    const result = await curlViaGateway(gw.port('egress'), client, pki.rootPath, echoUrl, ['-p']);
    assert.equal(result.code, 0, result.stderr);
  });

  it('accepts the chain an Istio sidecar sends: leaf + intermediate + root', async () => {
    const client = await pki.workload('bookinfo', 'productpage', { chain: [pki.intermediate, pki.root] });
    const result = await curlViaGateway(gw.port('egress'), client, pki.rootPath, echoUrl, ['-p']);
    assert.equal(result.code, 0, result.stderr);
  });

  it('accepts a leaf sent alone when the intermediate is the anchor', async () => {
    const client = await pki.workload('bookinfo', 'productpage', { chain: [] });
    const result = await curlViaGateway(gw.port('egress'), client, pki.rootPath, echoUrl, ['-p']);
    assert.equal(result.code, 0, result.stderr);
  });

  it('refuses a client with no certificate inside the handshake', async () => {
    const before = gw.records.length;
    const result = await sClient(gw.port('egress'), { caPath: pki.rootPath, waitForServerClose: true });
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /certificate required|alert/i);
    const record = await gw.waitForRecord((r) => gw.records.indexOf(r) >= before && r.action === 'identity-rejected');
    assert.equal(record.code, 'EGW_IDENTITY_NO_CERT');
  });

  it('refuses a forged chain: same subject names, other keys', async () => {
    const forgedRoot = await createRootCa({ commonName: 'Test Mesh Root', organization: 'test' });
    const forgedIntermediate = await createIntermediateCa(forgedRoot, {
      commonName: 'Test Mesh Intermediate',
      organization: 'test',
    });
    const client = await pki.issue('forged', {
      issuer: forgedIntermediate,
      chain: [forgedIntermediate, forgedRoot],
      spiffeIds: ['spiffe://cluster.local/ns/bookinfo/sa/productpage'],
    });
    assert.equal(forgedIntermediate.cert.subject, pki.intermediate.cert.subject, 'the forgery copies the names');
    assert.equal(await refusedWith(client.certPath, client.keyPath), 'EGW_IDENTITY_CHAIN_UNTRUSTED');
  });

  it('refuses a leaf signed by a foreign key but presented with the real intermediate', async () => {
    const impostor = await createIntermediateCa(await createRootCa({ commonName: 'x' }), {
      commonName: 'Test Mesh Intermediate',
      organization: 'test',
    });
    const client = await pki.issue('impostor', {
      signingKeyOverride: impostor.keys.privateKey,
      spiffeIds: ['spiffe://cluster.local/ns/bookinfo/sa/productpage'],
    });
    assert.equal(await refusedWith(client.certPath, client.keyPath), 'EGW_IDENTITY_CHAIN_UNTRUSTED');
  });

  it('refuses an expired leaf', async () => {
    const client = await pki.workload('bookinfo', 'old', {
      notBefore: new Date(Date.now() - 48 * HOUR),
      notAfter: new Date(Date.now() - HOUR),
    });
    assert.equal(await refusedWith(client.certPath, client.keyPath), 'EGW_IDENTITY_EXPIRED');
  });

  it('refuses a leaf that is not yet valid', async () => {
    const client = await pki.workload('bookinfo', 'future', {
      notBefore: new Date(Date.now() + HOUR),
      notAfter: new Date(Date.now() + 48 * HOUR),
    });
    assert.equal(await refusedWith(client.certPath, client.keyPath), 'EGW_IDENTITY_NOT_YET_VALID');
  });

  it('refuses a leaf that is a CA', async () => {
    const client = await pki.workload('bookinfo', 'ca', { isCa: true, keyUsage: KeyUsage.digitalSignature });
    assert.equal(await refusedWith(client.certPath, client.keyPath), 'EGW_IDENTITY_LEAF_IS_CA');
  });

  it('refuses a leaf with keyCertSign', async () => {
    const client = await pki.workload('bookinfo', 'signer', {
      keyUsage: KeyUsage.digitalSignature | KeyUsage.keyCertSign,
    });
    assert.equal(await refusedWith(client.certPath, client.keyPath), 'EGW_IDENTITY_LEAF_KEY_USAGE');
  });

  it('refuses a leaf with cRLSign', async () => {
    const client = await pki.workload('bookinfo', 'crl', { keyUsage: KeyUsage.digitalSignature | KeyUsage.cRLSign });
    assert.equal(await refusedWith(client.certPath, client.keyPath), 'EGW_IDENTITY_LEAF_KEY_USAGE');
  });

  it('refuses a leaf without digitalSignature', async () => {
    const client = await pki.workload('bookinfo', 'nodigsig', {
      keyUsage: KeyUsage.keyEncipherment | KeyUsage.keyAgreement,
    });
    assert.equal(await refusedWith(client.certPath, client.keyPath), 'EGW_IDENTITY_LEAF_KEY_USAGE');
  });

  it('refuses a leaf signed by a non-CA certificate without KeyUsage', async () => {
    const middle = await pki.workload('bookinfo', 'middle', { omitKeyUsage: true });
    const client = await pki.issue('under-leaf', {
      issuer: middle.leaf,
      chain: [middle.leaf, pki.intermediate],
      spiffeIds: ['spiffe://cluster.local/ns/bookinfo/sa/productpage'],
    });
    assert.equal(await refusedWith(client.certPath, client.keyPath), 'EGW_IDENTITY_ISSUER_NOT_CA');
  });

  it('refuses a leaf signed by an ordinary workload leaf', async () => {
    const middle = await pki.workload('bookinfo', 'middle');
    const client = await pki.issue('under-workload', {
      issuer: middle.leaf,
      chain: [middle.leaf, pki.intermediate],
      spiffeIds: ['spiffe://cluster.local/ns/bookinfo/sa/productpage'],
    });
    assert.equal(await refusedWith(client.certPath, client.keyPath), 'EGW_IDENTITY_ISSUER_NOT_CA');
  });

  it('refuses a client whose SVID has two URI SANs', async () => {
    const client = await pki.issue('two-uris', {
      spiffeIds: ['spiffe://cluster.local/ns/bookinfo/sa/a', 'spiffe://cluster.local/ns/bookinfo/sa/b'],
    });
    assert.equal(await refusedWith(client.certPath, client.keyPath), 'EGW_IDENTITY_URI_SAN_COUNT');
  });

  it('refuses a client whose certificate has no URI SAN', async () => {
    const client = await pki.issue('no-uri', { dnsNames: ['productpage.bookinfo.svc'], commonName: 'productpage' });
    assert.equal(await refusedWith(client.certPath, client.keyPath), 'EGW_IDENTITY_URI_SAN_COUNT');
  });

  it('refuses a SPIFFE ID from another trust domain', async () => {
    const client = await pki.issue('other-td', { spiffeIds: ['spiffe://evil.example/ns/bookinfo/sa/productpage'] });
    assert.equal(await refusedWith(client.certPath, client.keyPath), 'EGW_IDENTITY_TRUST_DOMAIN');
  });

  it('refuses a URI SAN that is not a valid SPIFFE ID (dot segment)', async () => {
    const client = await pki.issue('dot-segment', { spiffeIds: ['spiffe://cluster.local/ns/../sa/admin'] });
    assert.equal(await refusedWith(client.certPath, client.keyPath), 'EGW_IDENTITY_SPIFFE_ID_INVALID');
  });

  it('refuses a URI SAN with an upper-case trust domain', async () => {
    const client = await pki.issue('upper-td', { spiffeIds: ['spiffe://Cluster.Local/ns/bookinfo/sa/productpage'] });
    assert.equal(await refusedWith(client.certPath, client.keyPath), 'EGW_IDENTITY_SPIFFE_ID_INVALID');
  });

  it('resets the TCP connection after refusing a verified-but-invalid client', async () => {
    const client = await pki.workload('bookinfo', 'expired', {
      notBefore: new Date(Date.now() - 48 * HOUR),
      notAfter: new Date(Date.now() - HOUR),
    });
    const result = await curlViaGateway(gw.port('egress'), client, pki.rootPath, echoUrl, ['-p']);
    assert.match(result.stderr, /reset by peer|Connection reset|SSL_read|Recv failure/i);
  });
});

describe('client identity with a root-only trust anchor', () => {
  it('accepts leaf + intermediate chaining to the configured root', async () => {
    const fixture = await startGatewayFixture(
      () => ({
        listeners: [{ name: 'egress', listen: '127.0.0.1:0', mode: 'connect' }],
        rules: [{ name: 'loop', to: { cidrs: ['127.0.0.0/8'] }, action: 'allow' }],
      }),
      { anchors: (pki) => pki.rootPath },
    );
    const { pki, gw, echoPort } = fixture;
    try {
      const client = await pki.workload('bookinfo', 'productpage');
      const ok = await curlViaGateway(gw.port('egress'), client, pki.rootPath, `http://127.0.0.1:${echoPort}/`, ['-p']);
      assert.equal(ok.code, 0, ok.stderr);
      const leafOnly = await pki.workload('bookinfo', 'productpage', { chain: [] });
      const refused = await curlViaGateway(gw.port('egress'), leafOnly, pki.rootPath, `http://127.0.0.1:${echoPort}/`, [
        '-p',
      ]);
      assert.notEqual(refused.code, 0, 'without the intermediate there is no path to the root');
    } finally {
      await fixture.close();
    }
  });
});

describe('client identity with RSA keys', () => {
  it('accepts an RSA-2048 workload certificate (Istio default key type)', async () => {
    const fixture = await startGatewayFixture(
      () => ({
        listeners: [{ name: 'egress', listen: '127.0.0.1:0', mode: 'connect' }],
        rules: [{ name: 'loop', to: { cidrs: ['127.0.0.0/8'] }, action: 'allow' }],
      }),
      { keyType: 'rsa-2048' },
    );
    const { pki, gw, echoPort } = fixture;
    try {
      const client = await pki.issue('rsa', {
        spiffeIds: ['spiffe://cluster.local/ns/bookinfo/sa/productpage'],
        keyType: 'rsa-2048',
      });
      const ok = await curlViaGateway(gw.port('egress'), client, pki.rootPath, `http://127.0.0.1:${echoPort}/`, ['-p']);
      assert.equal(ok.code, 0, ok.stderr);
    } finally {
      await fixture.close();
    }
  });
});
