import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { netnsSkipReason, runNetnsScenario } from '../helpers/netns-scenario.ts';

interface Request {
  code: number;
  stderr: string;
  seen: string | null;
  action: string;
  snat: string | null;
}
interface Facts {
  before: Request;
  metricBefore: string[];
  removed: number;
  after: Request;
  again: Request;
  metricAfter: string[];
  reload: { ok: boolean; error?: string };
}

/**
 * The gateway runs in a network namespace of the test's own, whose loopback holds the echo
 * server's address and the two pool addresses (TEST-NET-1: nothing outside the namespace).
 */
function runScenario(): Facts {
  const addresses = ['192.0.2.1', '192.0.2.10', '192.0.2.11'].map((ip) => `ip addr add ${ip}/32 dev lo`);
  return runNetnsScenario<Facts>(addresses, 'test/integration/snat-failover-scenario.ts');
}

// Issue 12 item 5: an address removed from the host (EADDRNOTAVAIL on bind) fails over to the
// next address of the pool, the failover is counted, and the record shows the address used.
describe('SNAT pool failover when an address leaves the host', { skip: netnsSkipReason() }, () => {
  it('dials from the next address, counts the failover, and refuses a reload that cannot bind the gone one', () => {
    const facts = runScenario();
    // Positive control: before the removal the workload leaves from its own address, no failover.
    assert.equal(facts.before.code, 0, facts.before.stderr);
    assert.equal(facts.before.seen, '192.0.2.10');
    assert.equal(facts.before.snat, '192.0.2.10');
    assert.deepEqual(facts.metricBefore, []);
    assert.equal(facts.removed, 0, 'ip addr del');
    for (const request of [facts.after, facts.again]) {
      assert.equal(request.code, 0, request.stderr);
      assert.equal(request.action, 'egress-permitted');
      assert.equal(request.seen, '192.0.2.11', 'the echo server saw the next pool address');
      assert.equal(request.snat, '192.0.2.11', 'the audit record shows the address used');
    }
    assert.deepEqual(facts.metricAfter, ['egw_snat_failovers_total{listener="egress",address="192.0.2.10"} 2']);
    assert.equal(facts.reload.ok, false);
    assert.match(facts.reload.error ?? '', /listeners\[0\]\.snat\[0\]: SNAT address 192\.0\.2\.10 is not bindable/);
  });
});
