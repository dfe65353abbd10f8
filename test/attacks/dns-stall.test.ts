import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { isIPv4 } from 'node:net';
import { describe, it } from 'node:test';

const repo = new URL('../..', import.meta.url).pathname;
const PER_IDENTITY = 4; // resolver.maxConcurrentPerIdentity in the scenario

interface Outcome {
  status: number;
  proxyStatus: string;
  ms: number;
  echoed: boolean;
}
interface Facts {
  before: Outcome;
  during: Outcome[];
  attackerResults: Outcome[];
  resolved: number;
  maxInflight: number;
  inflightAtEnd: number;
  fdsBefore: number;
  fdsAfter: number;
  records: string[];
  timeoutMs: number;
  blackholed: number;
  viaServers: string[];
  outcomes: string[];
}

/** The system resolver address c-ares will ask (first IPv4 `nameserver` of /etc/resolv.conf). */
function systemNameserver(): string | undefined {
  const text = readFileSync('/etc/resolv.conf', 'utf8');
  return [...text.matchAll(/^\s*nameserver\s+(\S+)/gm)].map((m) => m[1] as string).find((ip) => isIPv4(ip));
}

function missing(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root for unshare -n (CI runs as root)';
  if (spawnSync('dnsmasq', ['--version']).status !== 0) return 'needs dnsmasq (Debian package dnsmasq-base)';
  if (!systemNameserver()) return 'needs an IPv4 nameserver in /etc/resolv.conf';
  return undefined;
}

/**
 * Runs the scenario in a network namespace of its own, with the system resolver's address on the
 * namespace's loopback, so the gateway's default resolver configuration (/etc/resolv.conf) asks
 * the test's dnsmasq and nothing leaves the namespace. dnsmasq rather than a hand-written server:
 * a real DNS server that forwards one zone to a sink that never answers, the way a slow or
 * hostile authoritative zone behaves.
 */
function runScenario(nameserver: string): Facts {
  const setup = [
    'set -e',
    'ip link set lo up',
    nameserver === '127.0.0.1' ? ':' : `ip addr add ${nameserver}/32 dev lo`,
    `export EGW_TEST_DNS_ADDRESS=${nameserver}`,
    'exec node --import tsx test/attacks/dns-stall-scenario.ts',
  ].join('\n');
  const run = spawnSync('unshare', ['-n', 'bash', '-c', setup], { cwd: repo, encoding: 'utf8', timeout: 150_000 });
  assert.equal(run.status, 0, `scenario failed (${run.status} ${run.signal}):\n${run.stderr}\n${run.stdout}`);
  const line = run.stdout.trim().split('\n').at(-1) ?? '';
  return JSON.parse(line) as Facts;
}

// Issue 9, found 3: destinations were resolved with dns.lookup (getaddrinfo on libuv's 4-thread
// pool) and the timeout abandoned the promise, not the lookup: four CONNECTs into a zone that
// never answers made every allowed hostname request fail for ~20 s. Now each lookup is a c-ares
// query with a deadline that cancels it, and one identity holds at most its own lookup slots.
describe('attack: an identity stalls DNS with a black-holed zone', { skip: missing() }, () => {
  it('keeps another identity resolving promptly, times the attacker out, and cancels its lookups', () => {
    const facts = runScenario(systemNameserver() as string);
    // Positive control, before the attack: the allowed identity resolves good.test and tunnels.
    assert.equal(facts.before.status, 200);
    assert.ok(facts.before.echoed, 'bytes crossed the tunnel before the attack');
    // During the attack: every allowed request succeeds, well before a stalled lookup's deadline.
    assert.ok(facts.during.length >= 5, `requests during the attack: ${facts.during.length}`);
    for (const outcome of facts.during) {
      assert.equal(outcome.status, 200, `good.test during the attack: ${JSON.stringify(outcome)}`);
      assert.ok(outcome.echoed);
      assert.ok(outcome.ms < facts.timeoutMs, `good.test waited ${outcome.ms} ms (deadline ${facts.timeoutMs} ms)`);
    }
    assert.ok(facts.resolved >= facts.during.length + 1, 'good.test was really looked up each time (no cache)');
    // The attacker: DNS timeout at the configured deadline, or refused at once beyond its slots.
    const timedOut = facts.attackerResults.filter((o) => o.status === 504);
    const busy = facts.attackerResults.filter((o) => o.status === 503);
    assert.equal(timedOut.length + busy.length, facts.attackerResults.length, 'no other answer to the attacker');
    assert.ok(timedOut.length >= PER_IDENTITY && busy.length > 0, `504: ${timedOut.length}, 503: ${busy.length}`);
    for (const o of timedOut) {
      assert.match(o.proxyStatus, /error=dns_timeout; details="cannot resolve n\d+\.blackhole\.test: no answer within/);
      assert.ok(o.ms >= facts.timeoutMs / 2 && o.ms < facts.timeoutMs + 3_000, `timed out after ${o.ms} ms`);
    }
    for (const o of busy) assert.match(o.proxyStatus, /error=dns_error; details=".*lookups in flight/);
    assert.deepEqual(
      [...new Set(facts.records)].sort(),
      ['EGW_UPSTREAM_DNS_BUSY', 'EGW_UPSTREAM_DNS_TIMEOUT'],
      'audited with their codes',
    );
    // The black hole was really asked, once per admitted lookup at most per try.
    assert.ok(facts.blackholed >= 1 && facts.blackholed <= timedOut.length * 2, `sink got ${facts.blackholed}`);
    // Really cancelled: in-flight lookups never exceed the attacker's slots plus the good one,
    // are back to 0 when the attack ends, and their sockets are closed.
    assert.ok(facts.maxInflight >= 1, 'the gauge saw lookups in flight');
    assert.ok(facts.maxInflight <= PER_IDENTITY + 1, `egw_dns_inflight peaked at ${facts.maxInflight}`);
    assert.equal(facts.inflightAtEnd, 0);
    assert.ok(facts.fdsAfter <= facts.fdsBefore, `fds ${facts.fdsBefore} → ${facts.fdsAfter}`);
    // resolver.servers: a configured server is asked instead of /etc/resolv.conf's; its answer
    // (TTL 30 s) is asked once and then served from the cache.
    assert.deepEqual(facts.viaServers, ['127.0.0.9', '127.0.0.9']);
    assert.deepEqual(facts.outcomes, ['resolved', 'cached']);
  });
});
