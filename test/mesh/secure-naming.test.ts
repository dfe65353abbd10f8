import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { type AddressInfo, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect } from 'node:tls';
import { runCli, runCommand } from '../helpers/run-command.ts';
import { startTestGateway, type TestGateway } from '../helpers/test-gateway.ts';
import type { TestPki } from '../helpers/test-pki.ts';
import { exactUriSanCheck, ISTIO_TCP_ALPN, istioSni } from './helpers/istio-client-sidecar.ts';

/*
 * Secure naming, end to end with the real CLI: `pki init` writes a CA in Istio's `cacerts`
 * layout, `pki issue` mints the gateway's SVID for the service account the mesh expects, and the
 * result is checked the way a client sidecar checks it: chain to the mesh root, then an exact
 * URI SAN match against the secure-naming list (no hostname check).
 */
const GATEWAY_ID = 'spiffe://cluster.local/ns/bookinfo/sa/bigip-proxy';
const SNI = istioSni(3128, 'bigip-proxy-svc.bookinfo.svc.cluster.local');

async function cli(args: string[]): Promise<string> {
  const result = await runCli(args);
  assert.equal(result.code, 0, `egress-gateway ${args.join(' ')}\n${result.stderr}`);
  return result.stdout;
}

/** The gateway as a client sidecar meets it: mTLS with Istio SNI/ALPN, mesh root, exact URI SAN. */
function sidecarHandshake(
  port: number,
  client: { cert: string; key: string },
  rootPath: string,
  expectedSan: string,
): Promise<{ ok: true; reply: string } | { ok: false; error: string }> {
  return new Promise((resolve) => {
    const socket = connect({
      host: '127.0.0.1',
      port,
      servername: SNI,
      ALPNProtocols: [...ISTIO_TCP_ALPN],
      cert: readFileSync(client.cert),
      key: readFileSync(client.key),
      ca: readFileSync(rootPath),
      checkServerIdentity: exactUriSanCheck(expectedSan),
    });
    let reply = '';
    socket.once('secureConnect', () => socket.write('ping\n'));
    socket.on('data', (chunk) => {
      reply += chunk;
      if (reply.includes('\n')) {
        socket.destroy();
        resolve({ ok: true, reply });
      }
    });
    socket.once('error', (error) => resolve({ ok: false, error: error.message }));
    socket.setTimeout(5_000, () => {
      socket.destroy();
      resolve({ ok: false, error: 'timeout' });
    });
  });
}

/**
 * A `cacerts` directory made the way Istio's own tooling makes one (tools/certs
 * Makefile.selfsigned.mk: openssl, RSA, root + intermediate with pathlen 0, cert-chain = ca + root),
 * with the signing key in the traditional PKCS#1 form older openssl wrote. RSA 2048 instead of
 * Istio's 4096 only to keep the test fast.
 */
async function istioStyleCacerts(dir: string): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const conf = (name: string, extensions: string[], dn: string[]) => {
    const path = join(dir, name);
    writeFileSync(
      path,
      [
        '[ req ]',
        'prompt = no',
        'distinguished_name = req_dn',
        'x509_extensions = req_ext',
        '[ req_ext ]',
        ...extensions,
        '[ req_dn ]',
        ...dn,
        '',
      ].join('\n'),
    );
    return path;
  };
  const rootConf = conf(
    'root-ca.conf',
    [
      'subjectKeyIdentifier = hash',
      'basicConstraints = critical, CA:true',
      'keyUsage = critical, digitalSignature, nonRepudiation, keyEncipherment, keyCertSign',
    ],
    ['O = Istio', 'CN = Root CA'],
  );
  const caConf = conf(
    'intermediate.conf',
    [
      'subjectKeyIdentifier = hash',
      'basicConstraints = critical, CA:true, pathlen:0',
      'keyUsage = critical, digitalSignature, nonRepudiation, keyEncipherment, keyCertSign',
      'subjectAltName = DNS:istiod.istio-system.svc',
    ],
    ['O = Istio', 'CN = Intermediate CA', 'L = cluster1'],
  );
  const run = async (args: string[]) => {
    const result = await runCommand('openssl', args, { cwd: dir });
    assert.equal(result.code, 0, `openssl ${args.join(' ')}\n${result.stderr}`);
  };
  await run(['genrsa', '-traditional', '-out', 'root-key.pem', '2048']);
  await run([
    'req',
    '-new',
    '-x509',
    '-sha256',
    '-days',
    '3650',
    '-key',
    'root-key.pem',
    '-config',
    rootConf,
    '-out',
    'root-cert.pem',
  ]);
  await run(['genrsa', '-traditional', '-out', 'ca-key.pem', '2048']);
  await run(['req', '-new', '-sha256', '-key', 'ca-key.pem', '-config', caConf, '-out', 'cluster-ca.csr']);
  await run([
    'x509',
    '-req',
    '-sha256',
    '-days',
    '730',
    '-CA',
    'root-cert.pem',
    '-CAkey',
    'root-key.pem',
    '-CAcreateserial',
    '-extensions',
    'req_ext',
    '-extfile',
    caConf,
    '-in',
    'cluster-ca.csr',
    '-out',
    'ca-cert.pem',
  ]);
  writeFileSync(
    join(dir, 'cert-chain.pem'),
    readFileSync(join(dir, 'ca-cert.pem'), 'utf8') + readFileSync(join(dir, 'root-cert.pem'), 'utf8'),
  );
  assert.match(readFileSync(join(dir, 'ca-key.pem'), 'utf8'), /BEGIN RSA PRIVATE KEY/);
}

describe('secure naming: the gateway SVID from pki issue, checked like a client sidecar', () => {
  let dir: string;
  let echo: Server;
  let echoPort: number;
  const gateways: TestGateway[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'egw-naming-'));
    echo = createServer((socket) => {
      socket.on('data', (data) => socket.write(`echo ${data}`));
      socket.on('error', () => {});
    });
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
    echoPort = (echo.address() as AddressInfo).port;
  });
  after(async () => {
    for (const gw of gateways) await gw.close();
    echo.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A tcp-mode gateway serving `certDir`'s SVID and trusting `anchors`. */
  async function gatewayWith(certDir: string, anchors: string): Promise<TestGateway> {
    const identity = {
      trustDomain: 'cluster.local',
      intermediatePath: anchors,
      gateway: { certPath: join(certDir, 'cert.pem'), keyPath: join(certDir, 'key.pem') },
    };
    const gw = await startTestGateway(identity as unknown as TestPki, {
      listeners: [{ name: 'bigip-proxy', listen: '127.0.0.1:0', mode: 'tcp', upstream: `127.0.0.1:${echoPort}` }],
      rules: [{ name: 'bookinfo', from: { namespaces: ['bookinfo'] }, action: 'allow' }],
    });
    gateways.push(gw);
    return gw;
  }

  it("pki init writes Istio's cacerts layout and pki issue mints a sidecar-verifiable SVID for the mesh service account", async () => {
    const ca = join(dir, 'cacerts');
    await cli(['pki', 'init', '--dir', ca, '--trust-domain', 'cluster.local']);
    for (const file of ['root-cert.pem', 'ca-cert.pem', 'ca-key.pem', 'cert-chain.pem'])
      assert.ok(existsSync(join(ca, file)), file);
    const gwDir = join(dir, 'gateway-svid');
    await cli(['pki', 'issue', '--ca-dir', ca, '--spiffe-id', GATEWAY_ID, '--out', gwDir]);

    // 1. Chain: the leaf verifies against root-cert.pem through the intermediate it carries.
    const verify = await runCommand('openssl', [
      'verify',
      '-x509_strict',
      '-CAfile',
      join(ca, 'root-cert.pem'),
      '-untrusted',
      join(gwDir, 'cert.pem'),
      join(gwDir, 'cert.pem'),
    ]);
    assert.equal(verify.code, 0, verify.stderr);
    assert.match(verify.stdout, /: OK/);
    // 2. Name: exactly one SAN entry, the URI, marked critical (empty subject), like an Istio workload cert.
    const san = await runCommand('openssl', [
      'x509',
      '-in',
      join(gwDir, 'cert.pem'),
      '-noout',
      '-ext',
      'subjectAltName',
      '-subject',
    ]);
    assert.match(
      san.stdout,
      /X509v3 Subject Alternative Name: critical\n\s+URI:spiffe:\/\/cluster\.local\/ns\/bookinfo\/sa\/bigip-proxy\n/,
    );
    assert.match(san.stdout, /^subject=\s*$/m, 'empty subject, as Istio issues workload certificates');

    // 3. Live: a sidecar-style client accepts it only under the exact expected SAN.
    const clientDir = join(dir, 'productpage');
    await cli([
      'pki',
      'issue',
      '--ca-dir',
      ca,
      '--spiffe-id',
      'spiffe://cluster.local/ns/bookinfo/sa/productpage',
      '--out',
      clientDir,
      '--include-root',
      '--key-type',
      'rsa',
    ]);
    const gw = await gatewayWith(gwDir, join(ca, 'ca-cert.pem'));
    const client = { cert: join(clientDir, 'cert.pem'), key: join(clientDir, 'key.pem') };
    const root = join(ca, 'root-cert.pem');
    const good = await sidecarHandshake(gw.port('bigip-proxy'), client, root, GATEWAY_ID);
    assert.deepEqual(good, { ok: true, reply: 'echo ping\n' });
    for (const wrong of [
      'spiffe://cluster.local/ns/bookinfo/sa/bigip-proxy-v2',
      'spiffe://cluster.local/ns/bookinfo/sa/bigip',
      'spiffe://other.domain/ns/bookinfo/sa/bigip-proxy',
    ]) {
      const result = await sidecarHandshake(gw.port('bigip-proxy'), client, root, wrong);
      assert.equal(result.ok, false, `${wrong} must not match ${GATEWAY_ID}`);
      assert.match((result as { error: string }).error, /secure naming/);
    }
  });

  it('a gateway SVID for another service account fails the secure-naming check even though its chain is valid', async () => {
    const ca = join(dir, 'cacerts');
    const otherDir = join(dir, 'wrong-sa-svid');
    await cli([
      'pki',
      'issue',
      '--ca-dir',
      ca,
      '--spiffe-id',
      'spiffe://cluster.local/ns/bookinfo/sa/default',
      '--out',
      otherDir,
    ]);
    const gw = await gatewayWith(otherDir, join(ca, 'ca-cert.pem'));
    const clientDir = join(dir, 'productpage');
    const result = await sidecarHandshake(
      gw.port('bigip-proxy'),
      { cert: join(clientDir, 'cert.pem'), key: join(clientDir, 'key.pem') },
      join(ca, 'root-cert.pem'),
      GATEWAY_ID,
    );
    assert.equal(result.ok, false);
    assert.match(
      (result as { error: string }).error,
      /secure naming: peer URI SANs \["spiffe:\/\/cluster\.local\/ns\/bookinfo\/sa\/default"\]/,
    );
  });

  it("issues from a cacerts directory made by Istio's own openssl recipe (RSA, PKCS#1 key) and serves workloads of that mesh", async () => {
    const ca = join(dir, 'istio-cacerts');
    await istioStyleCacerts(ca);
    const gwDir = join(dir, 'istio-gateway-svid');
    await cli(['pki', 'issue', '--ca-dir', ca, '--spiffe-id', GATEWAY_ID, '--out', gwDir]);
    const verify = await runCommand('openssl', [
      'verify',
      '-x509_strict',
      '-CAfile',
      join(ca, 'root-cert.pem'),
      '-untrusted',
      join(gwDir, 'cert.pem'),
      join(gwDir, 'cert.pem'),
    ]);
    assert.equal(verify.code, 0, verify.stderr);
    const clientDir = join(dir, 'istio-productpage');
    await cli([
      'pki',
      'issue',
      '--ca-dir',
      ca,
      '--spiffe-id',
      'spiffe://cluster.local/ns/bookinfo/sa/productpage',
      '--out',
      clientDir,
      '--include-root',
      '--key-type',
      'rsa',
    ]);
    assert.equal(
      (readFileSync(join(clientDir, 'cert.pem'), 'utf8').match(/BEGIN CERTIFICATE/g) ?? []).length,
      3,
      'leaf + intermediate + root, as istio-agent presents',
    );
    // The gateway trusts the mesh root (Istio's istio-ca-root-cert ConfigMap holds exactly this file).
    const gw = await gatewayWith(gwDir, join(ca, 'root-cert.pem'));
    const result = await sidecarHandshake(
      gw.port('bigip-proxy'),
      { cert: join(clientDir, 'cert.pem'), key: join(clientDir, 'key.pem') },
      join(ca, 'root-cert.pem'),
      GATEWAY_ID,
    );
    assert.deepEqual(result, { ok: true, reply: 'echo ping\n' });
    const permitted = await gw.waitForRecord((r) => r.action === 'egress-permitted');
    assert.equal(permitted.identity?.spiffeId, 'spiffe://cluster.local/ns/bookinfo/sa/productpage');
  });
});
