import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { type AddressInfo, createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type GatewayFixture, startGatewayFixture } from '../helpers/gateway-fixture.ts';
import type { TestGateway } from '../helpers/test-gateway.ts';
import { createTestPki, type TestPki, type WrittenLeaf } from '../helpers/test-pki.ts';
import { ISTIO_HTTP11_ALPN, ISTIO_TCP_ALPN, istioSni } from './helpers/istio-client-sidecar.ts';
import { sClient } from './helpers/openssl-client.ts';

/*
 * Drives the gateway with `openssl s_client` configured like an Istio client sidecar under
 * ISTIO_MUTUAL: Istio's SNI and ALPN offers, Envoy's default TLS 1.2 cipher list and groups,
 * and the chain istio-agent presents (leaf + intermediate + root).
 */
const SNI = istioSni(3128, 'bigip-proxy-svc.bookinfo.svc.cluster.local');
/** Envoy's default client cipher list for TLS 1.2 (non-FIPS); TLS 1.3 suites are fixed. */
const ENVOY_TLS12_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-RSA-CHACHA20-POLY1305',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
].join(':');
const ENVOY_GROUPS = 'X25519:P-256';

/** A TCP upstream that answers each chunk with the peer address it sees. */
async function startEcho(): Promise<Server> {
  const server = createServer((socket) => {
    socket.on('data', (data) => socket.write(`echo from ${socket.remoteAddress}: ${data}`));
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

interface Setup {
  readonly fixture: GatewayFixture;
  readonly pki: TestPki;
  readonly gw: TestGateway;
  readonly client: WrittenLeaf;
  /** intermediate + root, what istio-agent appends after the leaf. */
  readonly chainPath: string;
}

async function setup(
  keyType: 'ecdsa-p256' | 'rsa-2048',
  echoPort: number,
  anchors: 'intermediate' | 'root',
): Promise<Setup> {
  // The suite's own target (startEcho: raw bytes back, prefixed with the peer address) is shared by every setup.
  const fixture = await startGatewayFixture(
    () => ({
      listeners: [
        {
          name: 'bigip-proxy',
          listen: '127.0.0.1:0',
          mode: 'tcp',
          upstream: `127.0.0.1:${echoPort}`,
          snat: '127.0.0.2',
        },
      ],
      rules: [{ name: 'bookinfo', from: { namespaces: ['bookinfo'] }, action: 'allow' }],
    }),
    { keyType, httpEchoes: [], anchors: (pki) => (anchors === 'root' ? pki.rootPath : pki.intermediatePath) },
  );
  const { pki, gw } = fixture;
  const client = await pki.workload('bookinfo', 'productpage', { keyType, chain: [pki.intermediate, pki.root] });
  const chainPath = join(pki.dir, 'sidecar-chain.pem');
  writeFileSync(chainPath, `${pki.intermediate.certPem}\n${pki.root.certPem}`);
  return { fixture, pki, gw, client, chainPath };
}

function sidecarArgs(s: Setup, version: '-tls1_2' | '-tls1_3', alpn: readonly string[]): string[] {
  return [
    '-connect',
    `127.0.0.1:${s.gw.port('bigip-proxy')}`,
    version,
    '-servername',
    SNI,
    '-alpn',
    alpn.join(','),
    '-cipher',
    ENVOY_TLS12_CIPHERS,
    '-groups',
    ENVOY_GROUPS,
    // s_client sends only the first certificate of -cert; -cert_chain adds the rest, so the
    // gateway receives leaf + intermediate + root like it does from an Istio sidecar.
    '-cert',
    s.client.leafOnlyPath,
    '-cert_chain',
    s.chainPath,
    '-key',
    s.client.keyPath,
    '-CAfile',
    s.pki.rootPath,
    '-verify_return_error',
  ];
}

describe('Istio sidecar TLS compatibility (openssl s_client as the client sidecar)', () => {
  let echo: Server;
  let echoPort: number;
  const setups: Setup[] = [];

  before(async () => {
    echo = await startEcho();
    echoPort = (echo.address() as AddressInfo).port;
  });
  after(async () => {
    for (const s of setups) await s.fixture.close();
    echo.close();
  });

  for (const keyType of ['ecdsa-p256', 'rsa-2048'] as const) {
    for (const anchors of ['intermediate', 'root'] as const) {
      it(`accepts ${keyType} workloads on TLS 1.2 and 1.3 with TCP and HTTP ALPN offers, selecting no ALPN (trust anchor: ${anchors})`, async () => {
        const s = await setup(keyType, echoPort, anchors);
        setups.push(s);
        for (const version of ['-tls1_2', '-tls1_3'] as const) {
          for (const alpn of [ISTIO_TCP_ALPN, ISTIO_HTTP11_ALPN]) {
            const label = `${keyType} ${version} ALPN ${alpn.join(',')}`;
            const result = await sClient(sidecarArgs(s, version, alpn), {
              send: 'ping\n',
              until: /echo from .*: ping/,
            });
            assert.equal(
              result.verifyReturnCode,
              '0',
              `${label}: the sidecar side must verify the gateway chain to the mesh root\n${result.output}`,
            );
            assert.equal(result.protocol, version === '-tls1_2' ? 'TLSv1.2' : 'TLSv1.3', label);
            assert.equal(result.alpn, null, `${label}: the gateway must select no ALPN (never istio-peer-exchange)`);
            assert.ok(result.matched, `${label}: no reply through the tunnel\n${result.output}`);
            assert.match(
              result.output,
              /echo from 127\.0\.0\.2: ping/,
              `${label}: upstream must see the SNAT address and the bytes unchanged`,
            );
          }
        }
        const permitted = s.gw.records.filter((r) => r.action === 'egress-permitted');
        assert.equal(permitted.length, 4);
        for (const record of permitted) {
          assert.equal(record.tls?.serverName, SNI);
          assert.equal(record.identity?.spiffeId, 'spiffe://cluster.local/ns/bookinfo/sa/productpage');
        }
      });
    }
  }

  it('needs the intermediate from the sidecar when the gateway trusts only the mesh root (proves the chain is sent and used)', async () => {
    const s = await setup('ecdsa-p256', echoPort, 'root');
    setups.push(s);
    const emptyChain = join(s.pki.dir, 'root-only-chain.pem');
    writeFileSync(emptyChain, s.pki.root.certPem);
    const result = await sClient(sidecarArgs({ ...s, chainPath: emptyChain }, '-tls1_3', ISTIO_TCP_ALPN), {
      send: 'ping\n',
      until: /echo from/,
      timeoutMs: 3_000,
    });
    assert.equal(result.matched, false, 'leaf + root without the intermediate must not pass a root-anchored gateway');
    const record = await s.gw.waitForRecord((r) => r.action === 'identity-rejected');
    assert.equal(record.code, 'EGW_IDENTITY_CHAIN_UNTRUSTED');
  });

  it('accepts an RSA-2048 workload key under an ECDSA mesh CA', async () => {
    const s = await setup('ecdsa-p256', echoPort, 'intermediate');
    setups.push(s);
    const rsaClient = await s.pki.workload('bookinfo', 'reviews', {
      keyType: 'rsa-2048',
      chain: [s.pki.intermediate, s.pki.root],
    });
    const args = sidecarArgs({ ...s, client: rsaClient }, '-tls1_3', ISTIO_TCP_ALPN);
    const result = await sClient(args, { send: 'ping\n', until: /echo from/ });
    assert.ok(result.matched, result.output);
    assert.equal(result.alpn, null);
  });

  it('never fails the handshake over ALPN: istio-peer-exchange alone, or only unknown protocols', async () => {
    const s = await setup('ecdsa-p256', echoPort, 'intermediate');
    setups.push(s);
    for (const alpn of [['istio-peer-exchange'], ['h2'], ['x-unknown-protocol', 'another/9']]) {
      const result = await sClient(sidecarArgs(s, '-tls1_3', alpn), { send: 'ping\n', until: /echo from/ });
      assert.ok(result.matched, `${alpn.join(',')}: ${result.output}`);
      assert.equal(result.alpn, null, `${alpn.join(',')}: nothing may be selected`);
    }
  });

  it('refuses a sidecar from another mesh with the same names and Istio SNI/ALPN', async () => {
    const s = await setup('ecdsa-p256', echoPort, 'intermediate');
    setups.push(s);
    const otherMesh = await createTestPki();
    try {
      const forged = await otherMesh.workload('bookinfo', 'productpage', {
        chain: [otherMesh.intermediate, otherMesh.root],
      });
      const result = await sClient(sidecarArgs({ ...s, client: forged }, '-tls1_3', ISTIO_TCP_ALPN), {
        send: 'ping\n',
        until: /echo from/,
        timeoutMs: 3_000,
      });
      assert.equal(result.matched, false, 'no byte may reach the upstream');
      const record = await s.gw.waitForRecord((r) => r.action === 'identity-rejected');
      assert.equal(record.code, 'EGW_IDENTITY_CHAIN_UNTRUSTED');
      assert.equal(record.tls?.serverName, SNI);
    } finally {
      otherMesh.cleanup();
    }
  });
});
