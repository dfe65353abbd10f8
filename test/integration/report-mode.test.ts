import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { formatCef } from '../../src/audit/formats/cef-format.ts';
import { toEcs } from '../../src/audit/formats/ecs-format.ts';
import { formatText } from '../../src/audit/formats/text-format.ts';
import type { AuditRecord } from '../../src/core/audit-event.ts';
import { curlViaGateway } from '../helpers/curl.ts';
import { type EchoTarget, type GatewayFixture, startGatewayFixture } from '../helpers/gateway-fixture.ts';
import type { TestGateway } from '../helpers/test-gateway.ts';
import type { TestPki, WrittenLeaf } from '../helpers/test-pki.ts';

// Issue 12 item 1: a report listener lets through what the policy would refuse and audits it as
// egress-would-deny; an enforce listener with the same rules refuses it. `enforce: always`, the
// SSRF guard and identity checks still refuse on the report listener.
describe('report (monitor) mode, live through curl', () => {
  let pki: TestPki;
  let gw: TestGateway;
  let client: WrittenLeaf;
  let fixture: GatewayFixture;
  const echoes = new Map<string, EchoTarget>();

  before(async () => {
    fixture = await startGatewayFixture(
      () => ({
        listeners: [
          { name: 'report', listen: '127.0.0.1:0', mode: 'connect', enforcement: 'report' },
          { name: 'enforce', listen: '127.0.0.1:0', mode: 'connect' },
        ],
        rules: [
          { name: 'never-three', to: { cidrs: ['127.0.0.3/32'] }, action: 'deny', enforce: 'always' },
          { name: 'stage-two', to: { cidrs: ['127.0.0.2/32'] }, action: 'deny' },
          { name: 'allow-four', to: { cidrs: ['127.0.0.4/32'] }, action: 'allow' },
        ],
      }),
      { httpEchoes: ['127.0.0.1', '127.0.0.2', '127.0.0.3', '127.0.0.4'] },
    );
    ({ pki, gw } = fixture);
    for (const echo of fixture.httpEchoes) echoes.set(echo.host, echo);
    client = await pki.workload('bookinfo', 'productpage');
  });
  after(async () => {
    await fixture?.close();
  });

  const url = (ip: string) => `http://${ip}:${echoes.get(ip)?.port}/report`;
  /** `who: null` sends no client certificate. */
  const via = (listener: string, ip: string, who: WrittenLeaf | null = client) =>
    curlViaGateway(gw.port(listener), who ?? undefined, pki.rootPath, url(ip), ['-p', '-v']);
  const after_ = (seen: number, predicate: (r: AuditRecord) => boolean) =>
    gw.waitForRecord((r) => gw.records.indexOf(r) >= seen && predicate(r));

  async function metrics(): Promise<string> {
    const admin = gw.gateway.adminAddress;
    const response = await fetch(`http://127.0.0.1:${admin?.port}/metrics`);
    return response.text();
  }

  it('lets a staged deny through on the report listener (would-deny record, bytes pass) and refuses it on enforce', async () => {
    const control = await via('report', '127.0.0.4');
    assert.equal(control.code, 0, `positive control: ${control.stderr}`);
    assert.match(control.stdout, /"url":"\/report"/);
    let seen = gw.records.length;
    const through = await via('report', '127.0.0.2');
    assert.equal(through.code, 0, through.stderr);
    assert.match(through.stdout, /"url":"\/report"/, 'the request reached the destination');
    const record = await after_(seen, (r) => r.action === 'egress-would-deny');
    assert.equal(record.rule?.name, 'stage-two');
    assert.equal(record.reason, 'denied by rule stage-two');
    assert.equal(record.destination?.ip, '127.0.0.2');
    await after_(seen, (r) => r.action === 'egress-closed' && r.connectionId === record.connectionId);
    // Every audit format carries the action and the rule and reason that would have refused it.
    const ecs = toEcs(record) as { event: { action: string; reason: string }; rule: { name: string } };
    assert.equal(ecs.event.action, 'egress-would-deny');
    assert.equal(ecs.rule.name, 'stage-two');
    assert.equal(ecs.event.reason, 'denied by rule stage-two');
    assert.match(formatCef(record), /\|egress-would-deny\|.*act=would-deny .*reason=denied by rule stage-two/);
    assert.match(formatText(record), / WOULD-DENY .* rule=stage-two .*reason="denied by rule stage-two"/);
    assert.match(await metrics(), /^egw_policy_decisions_total\{rule="stage-two",decision="would_deny"\} 1$/m);
    seen = gw.records.length;
    const refused = await via('enforce', '127.0.0.2');
    assert.match(refused.stderr, /< HTTP\/1\.1 403/);
    const denial = await after_(seen, (r) => r.action === 'egress-rejected');
    assert.equal(denial.code, 'EGW_POLICY_DENIED');
    assert.equal(denial.rule?.name, 'stage-two');
  });

  it('refuses a rule with enforce: always on the report listener', async () => {
    const control = await via('report', '127.0.0.4');
    assert.equal(control.code, 0, `positive control: ${control.stderr}`);
    const seen = gw.records.length;
    const refused = await via('report', '127.0.0.3');
    assert.match(refused.stderr, /< HTTP\/1\.1 403/);
    const denial = await after_(seen, (r) => r.action === 'egress-rejected');
    assert.equal(denial.code, 'EGW_POLICY_DENIED');
    assert.equal(denial.rule?.name, 'never-three');
  });

  it('refuses a default deny into 127.0.0.0/8 in both modes (SSRF guard), while the deny naming 127.0.0.2 passed', async () => {
    const control = await via('report', '127.0.0.2');
    assert.equal(control.code, 0, `positive control (the deny rule names the range): ${control.stderr}`);
    let seen = gw.records.length;
    const reported = await via('report', '127.0.0.1');
    assert.match(reported.stderr, /< HTTP\/1\.1 403/);
    assert.match(reported.stderr, /Proxy-Status: .*error=destination_ip_prohibited/i);
    const guard = await after_(seen, (r) => r.action === 'egress-rejected');
    assert.equal(guard.code, 'EGW_POLICY_DESTINATION_PROHIBITED');
    seen = gw.records.length;
    const enforced = await via('enforce', '127.0.0.1');
    assert.match(enforced.stderr, /< HTTP\/1\.1 403/);
    assert.equal((await after_(seen, (r) => r.action === 'egress-rejected')).code, 'EGW_POLICY_DENIED');
  });

  it('POST /policy/check shows the would-deny on the report listener and the deny on the enforce listener', async () => {
    const check = async (listener: string) => {
      const response = await fetch(`http://127.0.0.1:${gw.gateway.adminAddress?.port}/policy/check`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          spiffeId: 'spiffe://cluster.local/ns/bookinfo/sa/productpage',
          listener,
          dest: `127.0.0.2:${echoes.get('127.0.0.2')?.port}`,
        }),
      });
      assert.equal(response.status, 200);
      return (await response.json()) as { allow: boolean; wouldDeny?: boolean; rule: string; summary: string };
    };
    const enforced = await check('enforce');
    assert.equal(enforced.allow, false);
    assert.equal(enforced.rule, 'stage-two');
    const reported = await check('report');
    assert.deepEqual([reported.allow, reported.wouldDeny, reported.rule], [true, true, 'stage-two']);
    assert.match(reported.summary, /^WOULD-DENY /);
  });

  it('never reports an identity failure through: no client certificate is refused on the report listener', async () => {
    const control = await via('report', '127.0.0.4');
    assert.equal(control.code, 0, `positive control: ${control.stderr}`);
    const seen = gw.records.length;
    const anonymous = await via('report', '127.0.0.4', null);
    assert.notEqual(anonymous.code, 0, `${anonymous.stdout}\n${anonymous.stderr}`);
    assert.doesNotMatch(anonymous.stdout, /"url":"\/report"/);
    await after_(seen, (r) => r.action === 'identity-rejected');
    assert.equal(
      gw.records.slice(seen).some((r) => r.action === 'egress-would-deny' || r.action === 'egress-permitted'),
      false,
    );
  });
});
