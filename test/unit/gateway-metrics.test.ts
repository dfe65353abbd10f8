import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { auditEgressPermitted, auditEgressRejected } from '../../src/core/audit-records.ts';
import { GatewayMetrics } from '../../src/metrics/gateway-metrics.ts';

const base = {
  connectionId: 'c1',
  listener: 'egress',
  mode: 'connect' as const,
  source: { ip: '127.0.0.1', port: 1 },
};

describe('GatewayMetrics counts refusals by the refusal table', () => {
  it('feeds the limit, dial and policy counters from the code, and nothing for an unlisted code', async () => {
    const metrics = new GatewayMetrics(
      { activeTunnels: () => new Map(), auditSinks: () => ({}), certificateExpiry: () => [] },
      { defaultMetrics: false },
    );
    try {
      // Positive control: a permit counts as an allow of its rule.
      auditEgressPermitted(base, 'allowed by rule r', { rule: 'r' });
      auditEgressRejected(base, { code: 'EGW_UPSTREAM_DNS', reason: 'cannot resolve' }, { rule: 'r' });
      auditEgressRejected(base, { code: 'EGW_LIMIT_IDENTITY_RATE', reason: 'rate' });
      auditEgressRejected(base, { code: 'EGW_POLICY_DESTINATION_PROHIBITED', reason: 'ssrf' }, { rule: 'r' });
      auditEgressRejected(base, { code: 'EGW_PROXY_BAD_REQUEST', reason: 'bad' });
      const text = await metrics.registry.metrics();
      assert.match(text, /egw_policy_decisions_total\{rule="r",decision="allow"\} 2/);
      assert.match(text, /egw_upstream_dial_errors_total\{listener="egress",kind="dns"\} 1/);
      assert.match(text, /egw_limit_rejections_total\{listener="egress",limit="identity_rate"\} 1/);
      assert.match(text, /egw_policy_decisions_total\{rule="r",decision="deny"\} 1/);
      assert.match(text, /egw_connections_total\{listener="egress",decision="rejected"\} 4/);
      assert.doesNotMatch(text, /decision="deny"\} [^1]/);
    } finally {
      metrics.close();
    }
  });
});
