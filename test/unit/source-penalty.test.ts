import assert from 'node:assert/strict';
import { createServer, type Socket, connect as tcpConnect } from 'node:net';
import { describe, it } from 'node:test';
import { PreHandshakeGate, recordHandshakeFailure, sourceKey } from '../../src/listener/pre-handshake-gate.ts';
import { MAX_PENALTY_SOURCES, SourcePenalty } from '../../src/listener/source-penalty.ts';

const limits = { failures: 3, windowMs: 10_000, penaltyMs: 30_000, maxPenaltyMs: 100_000 };

function box(now: { t: number }, overrides: Partial<typeof limits> = {}): SourcePenalty {
  return new SourcePenalty(
    () => ({ ...limits, ...overrides }),
    () => now.t,
  );
}

describe('SourcePenalty', () => {
  it('penalises after the threshold within the window, and doubles up to the cap', () => {
    const now = { t: 1_000_000 };
    const penalty = box(now);
    assert.equal(penalty.fail('a'), false);
    assert.equal(penalty.fail('a'), false);
    assert.equal(penalty.penalised('a'), false, 'below the threshold');
    assert.equal(penalty.fail('a'), true);
    assert.equal(penalty.penalised('a'), true);
    assert.equal(penalty.penalised('b'), false, 'another source is unaffected');
    now.t += 29_999;
    assert.equal(penalty.penalised('a'), true);
    now.t += 2;
    assert.equal(penalty.penalised('a'), false, 'the first penalty lasts 30 s');
    for (let i = 0; i < 3; i++) penalty.fail('a');
    now.t += 59_999;
    assert.equal(penalty.penalised('a'), true, 'the second lasts 60 s');
    now.t += 2;
    assert.equal(penalty.penalised('a'), false);
    for (let i = 0; i < 3; i++) penalty.fail('a');
    now.t += 99_999;
    assert.equal(penalty.penalised('a'), true, 'the third is capped at 100 s');
    now.t += 2;
    assert.equal(penalty.penalised('a'), false);
  });

  it('counts failures per window only, and is off at 0', () => {
    const now = { t: 1_000_000 };
    const penalty = box(now);
    penalty.fail('a');
    penalty.fail('a');
    now.t += 10_001;
    assert.equal(penalty.fail('a'), false, 'the window restarted');
    assert.equal(penalty.penalised('a'), false);
    const off = box(now, { failures: 0 });
    for (let i = 0; i < 100; i++) off.fail('a');
    assert.equal(off.penalised('a'), false);
    assert.equal(off.size, 0);
  });

  it('holds at most MAX_PENALTY_SOURCES sources, forgetting the least recent', () => {
    const now = { t: 1_000_000 };
    const penalty = box(now, { failures: 1 });
    penalty.fail('first');
    assert.equal(penalty.penalised('first'), true, 'positive control');
    for (let i = 0; i < MAX_PENALTY_SOURCES; i++) penalty.fail(`s${i}`);
    assert.equal(penalty.size, MAX_PENALTY_SOURCES);
    assert.equal(penalty.penalised('first'), false, 'evicted');
    assert.equal(penalty.penalised(`s${MAX_PENALTY_SOURCES - 1}`), true);
  });

  it('counts IPv6 sources by /64, as the per-source cap does', () => {
    const now = { t: 1_000_000 };
    const penalty = box(now);
    penalty.fail(sourceKey('2001:db8:1:2::1'));
    penalty.fail(sourceKey('2001:db8:1:2:aaaa::2'));
    penalty.fail(sourceKey('2001:db8:1:2:ffff:ffff:ffff:ffff'));
    assert.equal(penalty.penalised(sourceKey('2001:db8:1:2::99')), true);
    assert.equal(penalty.penalised(sourceKey('2001:db8:1:3::1')), false);
  });
});

/** A connected loopback pair: the server side is what a listener would hand to the gate. */
async function acceptedSocket(): Promise<{ accepted: Socket; close(): void }> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const accepted = new Promise<Socket>((r) => server.once('connection', r));
  const client = tcpConnect({ host: '127.0.0.1', port });
  const socket = await accepted;
  return {
    accepted: socket,
    close() {
      socket.destroy();
      client.destroy();
      server.close();
    },
  };
}

describe('PreHandshakeGate with a SourcePenalty', () => {
  it('penalises by the PROXY source behind a balancer, not by the balancer address', async () => {
    const gateLimits = { maxSockets: 0, maxPerSource: 0, firstByteMs: 60_000, auditIntervalMs: 60_000 };
    const penalty = new SourcePenalty(() => ({ ...limits, failures: 2 }));
    const gate = new PreHandshakeGate('egress', 'connect', () => gateLimits, penalty);
    const pairs = [];
    try {
      for (let i = 0; i < 2; i++) {
        const pair = await acceptedSocket();
        pairs.push(pair);
        assert.equal(gate.admit(pair.accepted, true), undefined, 'the balancer is admitted');
        assert.equal(gate.attribute(pair.accepted, '10.9.9.9', 28), undefined, `client attempt ${i + 1} admitted`);
        recordHandshakeFailure(pair.accepted);
        recordHandshakeFailure(pair.accepted); // reported twice, counted once
      }
      const next = await acceptedSocket();
      pairs.push(next);
      assert.equal(gate.admit(next.accepted, true), undefined, 'the balancer itself is not penalised');
      assert.equal(gate.attribute(next.accepted, '10.9.9.9', 28), 'source_penalty');
      const other = await acceptedSocket();
      pairs.push(other);
      assert.equal(gate.admit(other.accepted, true), undefined);
      assert.equal(gate.attribute(other.accepted, '10.9.9.10', 28), undefined, 'another client is unaffected');
    } finally {
      for (const pair of pairs) pair.close();
      gate.close();
    }
  });
});
