import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { WorkloadApiSource } from '../../src/sources/workload-api/workload-api-source.ts';
import { waitUntil } from '../helpers/poll-until.ts';
import { createTestPki, type TestPki } from '../helpers/test-pki.ts';
import { bundleBytes, type FakeWorkloadApi, startFakeWorkloadApi, svidMessage } from './helpers/fake-workload-api.ts';

describe('re-dialling an absent Workload API agent', () => {
  let pki: TestPki;
  let agent: FakeWorkloadApi;
  before(async () => {
    pki = await createTestPki();
    agent = await startFakeWorkloadApi();
  });
  after(async () => {
    await agent.cleanup();
    pki.cleanup();
  });

  it('backs off exponentially within the bounds, with jitter, and connects once the agent is there', async () => {
    await agent.stop();
    rmSync(agent.socket.slice('unix://'.length), { force: true });
    const logs: string[] = [];
    const source = new WorkloadApiSource({
      socket: agent.socket,
      trustDomain: pki.trustDomain,
      log: (m) => logs.push(m),
      backoff: { minMs: 40, maxMs: 320 },
    }).start();
    try {
      const delays = () =>
        logs.flatMap((l) => {
          const m = /EGW_WORKLOAD_API_UNAVAILABLE: .* re-dialling in (\d+) ms/.exec(l);
          return m ? [Number(m[1])] : [];
        });
      await waitUntil(() => delays().length >= 8, 20_000, 'eight re-dials');
      const seen = delays().slice(0, 8);
      seen.forEach((delay, i) => {
        const cap = Math.min(320, 40 * 2 ** i);
        assert.ok(delay >= cap / 2 && delay <= cap, `re-dial ${i + 1}: ${delay} ms is outside [${cap / 2}, ${cap}]`);
      });
      // At the cap, equal jitter still varies the delay (the odds of four equal draws are nil).
      assert.ok(new Set(seen.slice(4)).size > 1, `no jitter at the cap: ${seen.join(', ')}`);
      assert.equal(source.status().hasIdentity, false);
      // Positive control for the refusal-free path: the agent comes back and the next dial takes its SVID.
      agent.pushSvid({ svids: [svidMessage(pki.gateway, [pki.intermediate])] });
      agent.pushBundles({ bundles: { 'spiffe://cluster.local': bundleBytes([pki.intermediate]) } });
      await agent.start();
      const material = await source.firstMaterial();
      assert.match(material.certPem, /BEGIN CERTIFICATE/);
      assert.equal(source.status().hasIdentity, true);
      await waitUntil(() => source.status().connected, 20_000, 'both streams');
    } finally {
      source.close();
    }
  });
});
