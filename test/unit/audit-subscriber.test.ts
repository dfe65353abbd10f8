import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { auditSubscriberErrors, publishAudit, subscribeAudit } from '../../src/core/audit-event.ts';
import { GatewayMetrics } from '../../src/metrics/gateway-metrics.ts';
import { runCommand } from '../helpers/run-command.ts';

const AUDIT_EVENT = new URL('../../src/core/audit-event.ts', import.meta.url).pathname;

const record = {
  connectionId: 'c1',
  action: 'egress-rejected',
  reason: 'test',
  listener: 'egress',
  mode: 'connect',
  source: { ip: '127.0.0.1', port: 1 },
} as const;

/**
 * A process that subscribes a throwing listener, publishes one record, waits a few ticks and
 * says whether it is still alive. `raw` subscribes on the diagnostics_channel directly (what
 * subscribeAudit did before), which Node rethrows as an uncaught exception on the next tick.
 */
function childScript(raw: boolean): string {
  return `
    import diagnosticsChannel from 'node:diagnostics_channel';
    import { AUDIT_CHANNEL_NAME, auditSubscriberErrors, publishAudit, subscribeAudit } from ${JSON.stringify(AUDIT_EVENT)};
    const boom = () => { throw new Error('subscriber bug'); };
    if (${raw}) diagnosticsChannel.subscribe(AUDIT_CHANNEL_NAME, boom); else subscribeAudit(boom);
    publishAudit(${JSON.stringify(record)});
    await new Promise((resolve) => setTimeout(resolve, 50));
    console.log('alive ' + auditSubscriberErrors());
  `;
}

async function runChild(raw: boolean) {
  return runCommand(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', childScript(raw)], {
    timeoutMs: 30_000,
  });
}

describe('audit subscribers', () => {
  it('a subscriber that throws directly on the channel ends the process (what the safety net prevents)', async () => {
    const result = await runChild(true);
    assert.notEqual(result.code, 0, result.stdout);
    assert.match(result.stderr, /subscriber bug/);
    assert.doesNotMatch(result.stdout, /alive/);
  });

  it('a subscriber that throws through subscribeAudit is counted and the process keeps running', async () => {
    const result = await runChild(false);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout.trim(), 'alive 1');
  });

  it('the other subscribers still get the record, and egw_audit_subscriber_errors_total counts the throw', async () => {
    const metrics = new GatewayMetrics(
      { activeTunnels: () => new Map(), auditSinks: () => ({}), certificateExpiry: () => [] },
      { defaultMetrics: false },
    );
    const got: string[] = [];
    const unsubscribeBad = subscribeAudit(() => {
      throw new Error('subscriber bug');
    });
    const unsubscribeGood = subscribeAudit((r) => got.push(r.connectionId));
    const before = auditSubscriberErrors();
    try {
      publishAudit(record);
      assert.deepEqual(got, ['c1'], 'positive control: a well-behaved subscriber received the record');
      assert.equal(auditSubscriberErrors(), before + 1);
      const text = await metrics.registry.metrics();
      assert.match(text, /^egw_audit_subscriber_errors_total 1$/m);
    } finally {
      unsubscribeBad();
      unsubscribeGood();
      metrics.close();
    }
  });
});
