import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { buildGatewayState } from '../../src/config/build-state.ts';
import { parseConfig } from '../../src/config/load-config.ts';
import { formatSpiffeBundle } from '../../src/identity/spiffe-bundle.ts';
import type { IssuedCertificate } from '../../src/pki/issue-certificate.ts';
import { curlViaGateway } from '../helpers/curl.ts';
import { type EchoTarget, type GatewayFixture, startGatewayFixture } from '../helpers/gateway-fixture.ts';
import { waitUntil } from '../helpers/poll-until.ts';
import type { TestGateway } from '../helpers/test-gateway.ts';
import { createTestPki, type TestPki, type WrittenLeaf } from '../helpers/test-pki.ts';

const jwks = (certs: readonly IssuedCertificate[], sequence: number) =>
  formatSpiffeBundle(
    certs.map((c) => new X509Certificate(c.certPem)),
    { sequence, refreshHintSeconds: 300 },
  );

/**
 * Two trust domains, each with its own bundle (cluster.local: PEM, partner.example: SPIFFE bundle
 * JSON), driven with real curl through CONNECT. Both test PKIs use the same CA names on purpose:
 * only the keys tell the domains apart, as with two independently run meshes.
 */
describe('federation: identity.trustDomains', () => {
  let pki: TestPki;
  let partner: TestPki;
  let other: TestPki;
  let gw: TestGateway;
  let dir: string;
  let jwksPath: string;
  let echoA: EchoTarget;
  let echoB: EchoTarget;
  let fixture: GatewayFixture;
  const portOf = (echo: EchoTarget) => echo.port;

  before(async () => {
    [partner, other] = await Promise.all([
      createTestPki({ trustDomain: 'partner.example' }),
      createTestPki({ trustDomain: 'other.example' }),
    ]);
    dir = mkdtempSync(join(tmpdir(), 'egw-federation-'));
    jwksPath = join(dir, 'partner.jwks.json');
    writeFileSync(jwksPath, jwks([partner.intermediate], 1));
    fixture = await startGatewayFixture(
      ({ pki, httpEchoes }) => {
        const [a, b] = httpEchoes.map((echo) => echo.port);
        return {
          identity: {
            trustDomains: [
              { name: 'cluster.local', bundle: pki.intermediatePath },
              { name: 'partner.example', bundle: jwksPath },
            ],
            cert: pki.gateway.certPath,
            key: pki.gateway.keyPath,
          },
          listeners: [{ name: 'egress', listen: '127.0.0.1:0', mode: 'connect' }],
          rules: [
            {
              name: 'own-bookinfo',
              from: { namespaces: ['bookinfo'] },
              to: { ports: [a], cidrs: ['127.0.0.0/8'] },
              action: 'allow',
            },
            {
              name: 'partner-payments',
              from: { spiffeIds: ['spiffe://partner.example/ns/billing/sa/*'] },
              to: { ports: [a], cidrs: ['127.0.0.0/8'] },
              action: 'allow',
            },
            {
              name: 'partner-any',
              from: { trustDomains: ['partner.example'] },
              to: { ports: [b], cidrs: ['127.0.0.0/8'] },
              action: 'allow',
            },
          ],
        };
      },
      { httpEchoes: ['127.0.0.1', '127.0.0.1'] },
    );
    ({ pki, gw } = fixture);
    [echoA, echoB] = fixture.httpEchoes as [EchoTarget, EchoTarget];
  });
  after(async () => {
    await fixture?.close();
    for (const p of [partner, other]) p?.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  const curl = (client: WrittenLeaf, echo: EchoTarget) =>
    curlViaGateway(gw.port('egress'), client, pki.rootPath, `http://127.0.0.1:${portOf(echo)}/fed`, ['-p']);

  async function allowed(client: WrittenLeaf, echo: EchoTarget): Promise<void> {
    const result = await curl(client, echo);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(JSON.parse(result.stdout).url, '/fed');
  }

  /** The CONNECT is answered with a refusal: the identity was accepted, the policy said no. */
  async function denied(client: WrittenLeaf, echo: EchoTarget): Promise<void> {
    const result = await curl(client, echo);
    assert.notEqual(result.code, 0, 'curl must fail');
    assert.match(result.stderr, /CONNECT tunnel failed, response 403/);
  }

  /** The handshake's identity is refused; returns the audited code. */
  async function rejected(client: WrittenLeaf): Promise<string> {
    const before = gw.records.length;
    const result = await curl(client, echoA);
    assert.notEqual(result.code, 0, 'curl must fail');
    const record = await gw.waitForRecord((r) => gw.records.indexOf(r) >= before && r.action === 'identity-rejected');
    return `${record.code}: ${record.reason}`;
  }

  it('accepts each trust domain against its own bundle; rules select by domain, namespaces mean the own domain', async () => {
    const own = await pki.workload('bookinfo', 'productpage');
    await allowed(own, echoA);
    await denied(own, echoB);
    // Same namespace and service account names in the partner's domain: not the cluster's bookinfo.
    const partnerBookinfo = await partner.workload('bookinfo', 'productpage');
    await allowed(partnerBookinfo, echoB);
    await denied(partnerBookinfo, echoA);
    await allowed(await partner.workload('billing', 'payments'), echoA);
  });

  it('refuses a partner-domain SVID signed by the cluster CA (the partner SVID from the partner CA passes)', async () => {
    const id = 'spiffe://partner.example/ns/billing/sa/payments';
    await allowed(await partner.issue('partner-own-ca', { spiffeIds: [id] }), echoA);
    const forged = await pki.issue('partner-by-cluster-ca', { spiffeIds: [id] });
    // OpenSSL is offered every domain's anchors and accepts the chain: the verifier's choice of bundle refuses it.
    assert.match(
      await rejected(forged),
      /^EGW_IDENTITY_CHAIN_UNTRUSTED: no trust anchor or presented certificate issued/,
    );
  });

  it('refuses a cluster SVID signed by the partner CA (the cluster SVID from the cluster CA passes)', async () => {
    const id = 'spiffe://cluster.local/ns/bookinfo/sa/productpage';
    await allowed(await pki.issue('cluster-own-ca', { spiffeIds: [id] }), echoA);
    const forged = await partner.issue('cluster-by-partner-ca', { spiffeIds: [id] });
    assert.match(
      await rejected(forged),
      /^EGW_IDENTITY_CHAIN_UNTRUSTED: no trust anchor or presented certificate issued/,
    );
  });

  it('refuses an SVID of a trust domain that is not configured, as with a single trust domain', async () => {
    await allowed(await pki.workload('bookinfo', 'reviews'), echoA);
    const byCluster = await pki.issue('other-by-cluster-ca', { spiffeIds: ['spiffe://other.example/ns/a/sa/b'] });
    assert.match(await rejected(byCluster), /^EGW_IDENTITY_TRUST_DOMAIN: .*not in trust domain cluster\.local/);
    assert.match(await rejected(await other.workload('bookinfo', 'productpage')), /^EGW_IDENTITY_CHAIN_UNTRUSTED: /);
  });

  it('lists every domain’s anchors in the certificate expiry metric', async () => {
    const response = await fetch(`http://127.0.0.1:${gw.gateway.adminAddress?.port}/metrics`);
    const text = await response.text();
    const series = text.split('\n').filter((l) => l.startsWith('egw_certificate_expiry_seconds{'));
    assert.ok(
      series.some((l) => l.includes('role="anchor"') && !l.includes('trust domain')),
      series.join('\n'),
    );
    assert.ok(
      series.some((l) => l.includes('(trust domain partner.example)')),
      series.join('\n'),
    );
  });

  // Last: it replaces the partner's CA for the tests above.
  it('reloads a changed partner bundle file by itself: the new CA is trusted, the old one no longer', async () => {
    const before = await partner.workload('billing', 'payments');
    await allowed(before, echoA);
    const rotated = await createTestPki({ trustDomain: 'partner.example' });
    try {
      writeFileSync(jwksPath, jwks([rotated.intermediate], 2));
      const after = await rotated.workload('billing', 'payments');
      await waitUntil(
        async () => (await curl(after, echoA)).code === 0,
        20_000,
        'the rotated partner CA to be trusted',
        200,
      );
      assert.match(await rejected(before), /^EGW_IDENTITY_CHAIN_UNTRUSTED: /);
    } finally {
      rotated.cleanup();
    }
  });
});

describe('federation: configuration errors name the key and the file', () => {
  let pki: TestPki;
  let partner: TestPki;
  let dir: string;
  let jwksPath: string;

  before(async () => {
    [pki, partner] = await Promise.all([createTestPki(), createTestPki({ trustDomain: 'partner.example' })]);
    dir = mkdtempSync(join(tmpdir(), 'egw-federation-config-'));
    jwksPath = join(dir, 'partner.jwks.json');
    writeFileSync(jwksPath, jwks([partner.root], 1));
  });
  after(() => {
    pki.cleanup();
    partner.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  const FILE = '/etc/egw/gateway.yaml';
  const config = (identity: Record<string, unknown>, rules: unknown[] = []) =>
    stringify({
      identity: { cert: pki.gateway.certPath, key: pki.gateway.keyPath, ...identity },
      listeners: [{ name: 'egress', listen: '127.0.0.1:0', mode: 'connect' }],
      rules,
      audit: { sinks: [] },
    });
  const federation = (bundle = jwksPath) => ({
    trustDomains: [
      { name: 'cluster.local', bundle: pki.intermediatePath },
      { name: 'partner.example', bundle },
    ],
  });
  async function problem(text: string): Promise<string> {
    try {
      await buildGatewayState(parseConfig(text, FILE), FILE);
    } catch (error) {
      return (error as Error).message;
    }
    assert.fail('the configuration was accepted');
  }

  it('accepts the federation form and rules in any configured domain', async () => {
    const state = await buildGatewayState(
      parseConfig(
        config(federation(), [
          { name: 'p', from: { trustDomains: ['partner.example'], spiffeIds: ['spiffe://partner.example/**'] } },
        ]).replace('from:', 'action: allow\n    from:'),
        FILE,
      ),
      FILE,
    );
    assert.equal(state.trustBundle.trustDomain, 'cluster.local');
    assert.deepEqual([...(state.trustBundle.federated?.keys() ?? [])], ['partner.example']);
    assert.equal(state.policy.rules.length, 1);
  });

  it('refuses both forms, neither form, trustAnchors with trustDomains and a domain listed twice', async () => {
    const both = await problem(config({ trustDomain: 'cluster.local', ...federation() }));
    assert.match(both, new RegExp(`${FILE}: identity\\.trustDomains: use either identity\\.trustDomain`));
    assert.match(await problem(config({})), /identity\.trustDomain: required: identity\.trustDomain/);
    const anchors = await problem(config({ ...federation(), trustAnchors: pki.intermediatePath }));
    assert.match(anchors, /identity\.trustAnchors: not allowed with identity\.trustDomains/);
    const twice = await problem(
      config({
        trustDomains: [
          { name: 'cluster.local', bundle: pki.intermediatePath },
          { name: 'cluster.local', bundle: jwksPath },
        ],
      }),
    );
    assert.match(twice, /identity\.trustDomains\[1\]\.name: trust domain cluster\.local is listed twice/);
  });

  it('refuses a rule naming a trust domain that is not configured', async () => {
    const rule = (from: Record<string, unknown>) => [{ name: 'r', from, action: 'allow' }];
    const byDomain = await problem(config(federation(), rule({ trustDomains: ['elsewhere.example'] })));
    assert.match(byDomain, new RegExp(`^${FILE}: rules\\[0\\]\\.from\\.trustDomains\\[0\\]: trust domain elsewhere`));
    assert.match(byDomain, /outside the configured trust domains \(cluster\.local, partner\.example\)/);
    const byId = await problem(config(federation(), rule({ spiffeIds: ['spiffe://elsewhere.example/ns/a/sa/b'] })));
    assert.match(byId, /rules\[0\]\.from\.spiffeIds\[0\]: spiffe:\/\/elsewhere\.example\/ns\/a\/sa\/b is outside/);
    const invalid = await problem(config(federation(), rule({ trustDomains: ['Partner.Example'] })));
    assert.match(invalid, /rules\[0\]\.from\.trustDomains\[0\]: .*lowercase/);
  });

  it('refuses a malformed SPIFFE bundle, naming the config key, the bundle file and the key index', async () => {
    const broken = join(dir, 'broken.jwks.json');
    const doc = JSON.parse(jwks([partner.root, partner.intermediate], 1));
    doc.keys[1].kid = 'not-allowed';
    writeFileSync(broken, JSON.stringify(doc));
    const message = await problem(config(federation(broken)));
    assert.match(message, new RegExp(`^${FILE}: identity\\.trustDomains\\[1\\]\\.bundle: ${broken}: SPIFFE bundle`));
    assert.match(message, /keys\[1\]: kid must not be set/);
    const missing = await problem(config(federation(join(dir, 'absent.json'))));
    assert.match(missing, /identity\.trustDomains\[1\]\.bundle: cannot read .*absent\.json \(ENOENT\)/);
  });
});
