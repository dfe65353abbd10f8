import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { dirname } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type AuditRecord, subscribeAudit } from '../../src/core/audit-event.ts';
import { startEchoServer } from '../../src/devtools/echo-server.ts';
import { type Gateway, startGateway } from '../../src/main.ts';
import { curlViaGateway } from '../helpers/curl.ts';
import { pollDefined } from '../helpers/poll-until.ts';
import { writeTestConfig } from '../helpers/test-gateway.ts';
import { createTestPki, type TestPki, type WrittenLeaf } from '../helpers/test-pki.ts';
import { bundleBytes, type FakeWorkloadApi, startFakeWorkloadApi, svidMessage } from './helpers/fake-workload-api.ts';

/** The agent's federated bundles (FetchX509Bundles keys other than the own domain) become trust domains. */
describe('federation from the SPIFFE Workload API', () => {
  let pki: TestPki;
  let partner: TestPki;
  let agent: FakeWorkloadApi;
  let gateway: Gateway;
  let configPath: string;
  let http: Awaited<ReturnType<typeof startEchoServer>>;
  const records: AuditRecord[] = [];
  const logs: string[] = [];
  /** The state in effect, or undefined before the first SVID. */
  const trust = () => {
    try {
      return gateway.state().trustBundle;
    } catch {
      return undefined;
    }
  };
  let unsubscribe: () => void;
  const port = () => gateway.addresses.get('egress')?.port as number;
  const curl = (client: WrittenLeaf) =>
    curlViaGateway(port(), client, pki.rootPath, `http://127.0.0.1:${(http.address() as AddressInfo).port}/`, ['-p']);
  /** Refused at the handshake: returns the audited code. */
  async function rejected(client: WrittenLeaf): Promise<string> {
    const from = records.length;
    const result = await curl(client);
    assert.notEqual(result.code, 0, 'curl must fail');
    const record = await pollDefined('the identity-rejected record', () =>
      records.slice(from).find((r) => r.action === 'identity-rejected'),
    );
    return record.code ?? '';
  }

  before(async () => {
    [pki, partner] = await Promise.all([createTestPki(), createTestPki({ trustDomain: 'partner.example' })]);
    http = await startEchoServer('127.0.0.1', 0);
    agent = await startFakeWorkloadApi();
    unsubscribe = subscribeAudit((r) => records.push(r));
    configPath = writeTestConfig(pki, {
      identity: { trustDomain: 'cluster.local', workloadApi: { socket: agent.socket } },
      listeners: [{ name: 'egress', listen: '127.0.0.1:0', mode: 'connect' }],
      // With the agent, federation is decided at run time: a rule may name a domain not federated yet.
      rules: [
        {
          name: 'partner',
          from: { trustDomains: ['partner.example'] },
          to: { cidrs: ['127.0.0.0/8'] },
          action: 'allow',
        },
        { name: 'own', from: { namespaces: ['bookinfo'] }, to: { cidrs: ['127.0.0.0/8'] }, action: 'allow' },
      ],
      admin: { listen: 'off', watch: false },
    });
    gateway = await startGateway({ configPath, log: (m) => logs.push(m), adminListen: 'off', processMetrics: false });
    agent.pushSvid({ svids: [svidMessage(pki.gateway, [pki.intermediate])] });
    agent.pushBundles({
      bundles: {
        'spiffe://cluster.local': bundleBytes([pki.intermediate]),
        'spiffe://partner.example': bundleBytes([partner.intermediate]),
      },
    });
    await pollDefined('the federated bundle', () => (trust()?.federated?.size === 1 ? true : undefined));
  });
  after(async () => {
    unsubscribe?.();
    await gateway?.close(500);
    await agent?.cleanup();
    http?.close();
    rmSync(dirname(configPath), { recursive: true, force: true });
    pki?.cleanup();
    partner?.cleanup();
  });

  it('accepts a partner SVID against the partner bundle, and refuses a partner ID signed by the cluster CA', async () => {
    const own = await curl(await pki.workload('bookinfo', 'productpage'));
    assert.equal(own.code, 0, own.stderr);
    const fromPartner = await curl(await partner.workload('billing', 'payments'));
    assert.equal(fromPartner.code, 0, fromPartner.stderr);
    const forged = await pki.issue('forged', { spiffeIds: ['spiffe://partner.example/ns/billing/sa/payments'] });
    assert.equal(await rejected(forged), 'EGW_IDENTITY_CHAIN_UNTRUSTED');
  });

  it('stops trusting a partner when the agent drops its bundle', async () => {
    const client = await partner.workload('billing', 'ledger');
    const control = await curl(client);
    assert.equal(control.code, 0, control.stderr);
    agent.pushBundles({ bundles: { 'spiffe://cluster.local': bundleBytes([pki.intermediate]) } });
    await pollDefined('the federation to end', () =>
      trust() !== undefined && trust()?.federated === undefined ? true : undefined,
    );
    assert.equal(await rejected(client), 'EGW_IDENTITY_CHAIN_UNTRUSTED');
    const own = await curl(await pki.workload('bookinfo', 'reviews'));
    assert.equal(own.code, 0, own.stderr);
  });

  it('refuses a bundle map naming one trust domain twice, keeping the last good state', async () => {
    const before = trust();
    const from = logs.length;
    agent.pushBundles({
      bundles: {
        'spiffe://cluster.local': bundleBytes([pki.intermediate]),
        'spiffe://partner.example': bundleBytes([partner.intermediate]),
        'partner.example': bundleBytes([pki.intermediate]),
      },
    });
    await pollDefined('the refusal', () =>
      logs
        .slice(from)
        .find((l) => /EGW_WORKLOAD_API_INVALID.*trust domain partner\.example has more than one bundle/.test(l)),
    );
    assert.equal(trust(), before);
  });
});
