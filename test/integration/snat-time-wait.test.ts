import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { netnsSkipReason, runNetnsScenario } from '../helpers/netns-scenario.ts';

const RANGE = '40000 40015';
const PORTS = 16;

interface Facts {
  kernelDialBefore: string;
  tunnels: number;
  peers: string[];
  failures: string[];
  timeWait: number[];
  kernelDialAfter: string;
  absolutePeer: string;
  reload: { ok: boolean; error?: string };
  afterReload: number;
  refusals: number;
}

function runScenario(): Facts {
  const setup = [
    'ip addr add 192.0.2.1/32 dev lo',
    'ip addr add 192.0.2.10/32 dev lo',
    // The namespace's own ephemeral range (per network namespace): 16 ports fill in a second.
    `sysctl -qw net.ipv4.ip_local_port_range="${RANGE}"`,
  ];
  return runNetnsScenario<Facts>(setup, 'test/integration/snat-time-wait-scenario.ts');
}

// Found by the bench (issue 8): at ~650 new connections a second through one SNAT address, every
// ephemeral port of the address was in TIME_WAIT within a minute; bind(address, 0) then failed
// with EADDRINUSE for every dial and for the SNAT probe of a reload, whatever the destination.
describe('SNAT dials when every ephemeral port of the address is in TIME_WAIT', { skip: netnsSkipReason() }, () => {
  it('keeps dialling, and a reload still proves the address, where a kernel-chosen port fails', () => {
    const facts = runScenario();
    // Positive control: before the run a dial with a kernel-chosen port works.
    assert.equal(facts.kernelDialBefore, 'connected');
    assert.deepEqual(facts.failures, [], 'every tunnel got through');
    assert.equal(facts.peers.length, PORTS * 3);
    assert.equal(facts.refusals, 0);
    for (const peer of facts.peers) {
      const port = Number(peer.split(':')[1]);
      assert.equal(peer.split(':')[0], '192.0.2.10', 'left from the SNAT address');
      assert.ok(port >= 40000 && port <= 40015, `source port ${port} is in the host's ephemeral range`);
    }
    // The condition really held: the gateway's side holds TIME_WAIT on every port of the range,
    // so the kernel has no port left to give bind(address, 0).
    assert.equal(new Set(facts.timeWait).size, PORTS, `TIME_WAIT ports: ${facts.timeWait.join(',')}`);
    assert.equal(facts.kernelDialAfter, 'EADDRINUSE');
    assert.match(
      facts.absolutePeer,
      /^192\.0\.2\.10:400(0\d|1[0-5])$/,
      'absolute-form dials from the SNAT address too',
    );
    assert.equal(facts.reload.ok, true, facts.reload.error);
    assert.equal(facts.afterReload, 0);
  });
});
