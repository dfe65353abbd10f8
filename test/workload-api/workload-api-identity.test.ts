import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { dirname } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startEchoServer } from '../../src/devtools/echo-server.ts';
import { type Gateway, startGateway } from '../../src/main.ts';
import { curlViaGateway } from '../helpers/curl.ts';
import { sClient } from '../helpers/openssl-client.ts';
import { pollDefined } from '../helpers/poll-until.ts';
import { startTcpEchoServer } from '../helpers/tcp-echo-server.ts';
import { writeTestConfig } from '../helpers/test-gateway.ts';
import { createTestPki, type TestPki, type WrittenLeaf } from '../helpers/test-pki.ts';
import { openTunnel } from '../helpers/tunnel-client.ts';
import { bundleBytes, type FakeWorkloadApi, startFakeWorkloadApi, svidMessage } from './helpers/fake-workload-api.ts';

// SPIRE cannot be built here (no Go toolchain, no internet): the agent is our own server that
// implements the vendored workload.proto over a unix socket (helpers/fake-workload-api.ts).

const GATEWAY_ID = 'spiffe://cluster.local/ns/bookinfo/sa/bigip-proxy';

describe('identity from the SPIFFE Workload API', () => {
  let pki: TestPki;
  let partner: TestPki;
  let agent: FakeWorkloadApi;
  let echo: Awaited<ReturnType<typeof startTcpEchoServer>>;
  let workload: WrittenLeaf;
  let gateway: Gateway;
  let configPath: string;
  const logs: string[] = [];
  const gatewayLeaf = (name: string) =>
    pki.issue(name, { spiffeIds: [GATEWAY_ID], dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  const port = () => gateway.addresses.get('egress')?.port as number;
  /** The serial of the certificate a new handshake presents, read by openssl s_client. */
  const servedSerial = async () => {
    const result = await sClient(port(), { client: workload, caPath: pki.rootPath, servername: 'localhost' });
    const pem = result.stdout.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/)?.[0];
    assert.ok(pem, `s_client showed no server certificate: ${result.stderr}`);
    return new X509Certificate(pem).serialNumber;
  };
  const serialOf = (leaf: WrittenLeaf) => new X509Certificate(leaf.leaf.certPem).serialNumber;
  let http: Awaited<ReturnType<typeof startEchoServer>>;
  /** A real mTLS CONNECT through the gateway with curl, to an HTTP echo server behind it. */
  const curlEcho = async () => {
    const result = await curlViaGateway(port(), workload, pki.rootPath, `http://127.0.0.1:${httpPort()}/wl`, ['-p']);
    return { ...result, url: result.code === 0 ? JSON.parse(result.stdout).url : undefined };
  };
  const httpPort = () => (http.address() as AddressInfo).port;

  before(async () => {
    pki = await createTestPki();
    partner = await createTestPki({ trustDomain: 'partner.example' });
    workload = await pki.workload('bookinfo', 'productpage');
    echo = await startTcpEchoServer();
    http = await startEchoServer('127.0.0.1', 0);
    agent = await startFakeWorkloadApi();
    configPath = writeTestConfig(pki, {
      identity: { trustDomain: 'cluster.local', workloadApi: { socket: agent.socket } },
      listeners: [{ name: 'egress', listen: '127.0.0.1:0', mode: 'connect' }],
      rules: [
        { name: 'bookinfo', from: { namespaces: ['bookinfo'] }, to: { cidrs: ['127.0.0.0/8'] }, action: 'allow' },
      ],
      admin: { listen: 'off', watch: false },
    });
  });
  after(async () => {
    await gateway?.close(500);
    await agent.cleanup();
    echo.close();
    http.close();
    rmSync(dirname(configPath), { recursive: true, force: true });
    pki.cleanup();
    partner.cleanup();
  });

  it('is unready (/readyz 503) until the first SVID, then serves mTLS CONNECT with it and the streamed bundles', async () => {
    gateway = await startGateway({
      configPath,
      log: (m) => logs.push(m),
      adminListen: '127.0.0.1:0',
      processMetrics: false,
    });
    const readyz = async () => {
      const response = await fetch(`http://127.0.0.1:${gateway.adminAddress?.port}/readyz`);
      return { status: response.status, body: (await response.json()) as { reasons: string[] } };
    };
    // Positive control: the gateway dialled the agent with the security header and the admin API answers...
    await pollDefined('the gateway to open both streams', () => (agent.calls.accepted >= 2 ? true : undefined));
    assert.equal(agent.calls.refusedHeader, 0);
    const waiting = await readyz();
    // ...and it is not ready, and does not listen, while it has no SVID.
    assert.equal(waiting.status, 503);
    assert.deepEqual(waiting.body.reasons, [`waiting for the first X.509-SVID from Workload API ${agent.socket}`]);
    assert.equal(gateway.addresses.size, 0);
    agent.pushSvid({ svids: [svidMessage(pki.gateway, [pki.intermediate])] });
    agent.pushBundles({
      bundles: {
        'spiffe://cluster.local': bundleBytes([pki.intermediate]),
        'spiffe://partner.example': bundleBytes([partner.root]),
      },
    });
    await pollDefined('readiness', async () => ((await readyz()).status === 200 ? true : undefined));
    assert.deepEqual(await gateway.readiness(), { ready: true, reasons: [] });
    const result = await curlEcho();
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.url, '/wl');
    assert.equal(await servedSerial(), serialOf(pki.gateway));
    await pollDefined('the federated bundle to be taken', () =>
      logs.find((l) => /SVID spiffe:\/\/cluster\.local\/ns\/bookinfo\/sa\/bigip-proxy .*1 federated bundles/.test(l)),
    );
  });

  it('rotates the SVID mid-traffic: an open tunnel keeps working, a new handshake presents the new certificate', async () => {
    const tunnel = await openTunnel(port(), workload, pki.rootPath, `127.0.0.1:${echo.port}`);
    tunnel.socket.write('before');
    await tunnel.waitFor(6);
    const rotated = await gatewayLeaf('gateway-rotated');
    agent.pushSvid({ svids: [svidMessage(rotated, [pki.intermediate])] });
    await pollDefined('the new certificate to be served', async () =>
      (await servedSerial()) === serialOf(rotated) ? true : undefined,
    );
    tunnel.socket.write('after');
    assert.equal((await tunnel.waitFor(11)).toString(), 'beforeafter');
    assert.equal(tunnel.socket.destroyed, false);
    tunnel.close();
  });

  it('keeps serving with the last good state while the agent is down, and re-dials it', async () => {
    const served = await servedSerial();
    assert.equal(agent.openSvidStreams(), 1);
    await agent.stop();
    await pollDefined('the gateway to notice', () => logs.find((l) => l.includes('EGW_WORKLOAD_API_UNAVAILABLE')));
    const whileDown = await curlEcho();
    assert.equal(whileDown.code, 0, whileDown.stderr);
    assert.equal(await servedSerial(), served);
    assert.equal((await gateway.readiness()).ready, true);
    await agent.start();
    await pollDefined('the gateway to re-dial', () => (agent.openSvidStreams() === 1 ? true : undefined));
    const third = await gatewayLeaf('gateway-third');
    agent.pushSvid({ svids: [svidMessage(third, [pki.intermediate])] });
    await pollDefined('an update over the new stream', async () =>
      (await servedSerial()) === serialOf(third) ? true : undefined,
    );
  });

  it('takes trust bundle updates from FetchX509Bundles, and refuses ones the SVID does not chain to', async () => {
    assert.equal(gateway.state().trustBundle.anchors.length, 1);
    agent.pushBundles({
      bundles: { 'spiffe://cluster.local': bundleBytes([pki.intermediate, pki.root]) },
    });
    await pollDefined('the two-anchor bundle', () =>
      gateway.state().trustBundle.anchors.length === 2 ? true : undefined,
    );
    const control = await curlEcho();
    assert.equal(control.code, 0, control.stderr);
    const before = logs.length;
    agent.pushBundles({ bundles: { 'spiffe://cluster.local': bundleBytes([partner.root]) } });
    const refused = await pollDefined('the refusal', () =>
      logs.slice(before).find((l) => l.startsWith('EGW_WORKLOAD_API_INVALID')),
    );
    assert.match(refused, /does not verify against the cluster\.local bundle/);
    agent.pushBundles({ bundles: { 'spiffe://partner.example': bundleBytes([partner.root]) } });
    await pollDefined('the second refusal', () =>
      logs.slice(before).find((l) => /holds no bundle for the configured trust domain cluster\.local/.test(l)),
    );
    assert.equal(gateway.state().trustBundle.anchors.length, 2);
    const after = await curlEcho();
    assert.equal(after.code, 0, after.stderr);
  });

  const refusals: Array<[string, () => Promise<Parameters<FakeWorkloadApi['pushSvid']>[0]>, RegExp]> = [
    [
      'bad DER',
      async () => ({ svids: [{ ...svidMessage(pki.gateway, [pki.intermediate]), x509_svid: Buffer.from('nope') }] }),
      /x509_svid.*not a DER certificate/,
    ],
    [
      'a key that does not match the certificate',
      async () => ({ svids: [svidMessage(await gatewayLeaf('gateway-x'), [pki.intermediate], { keyFrom: workload })] }),
      /x509_svid_key does not match the certificate/,
    ],
    [
      'an SVID in another trust domain',
      async () => ({ svids: [svidMessage(await partner.workload('ns', 'sa'), [partner.intermediate])] }),
      /spiffe:\/\/partner\.example\/ns\/ns\/sa\/sa is not in the configured trust domain cluster\.local/,
    ],
    ['an empty SVID list', async () => ({ svids: [] }), /holds no SVID/],
  ];
  for (const [what, response, reason] of refusals) {
    it(`refuses ${what}, keeps the last good state and logs why`, async () => {
      const good = await servedSerial();
      const control = await curlEcho();
      assert.equal(control.code, 0, control.stderr);
      const before = logs.length;
      agent.pushSvid(await response());
      const line = await pollDefined('the refusal to be logged', () =>
        logs.slice(before).find((l) => l.startsWith('EGW_WORKLOAD_API_INVALID')),
      );
      assert.match(line, reason);
      assert.match(line, /keeping the last good identity/);
      assert.equal(await servedSerial(), good);
      const after = await curlEcho();
      assert.equal(after.code, 0, after.stderr);
    });
  }
});
