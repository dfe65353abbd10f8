import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { hostPortRange, SnatPortCursor } from '../../src/upstream/snat-ports.ts';

describe('SNAT source ports', () => {
  it("walks the host's ephemeral range per address, wraps, and skips reserved ports", () => {
    const cursor = new SnatPortCursor({ low: 40000, high: 40004, reserved: new Set([40002]) });
    const first = cursor.next('192.0.2.10');
    assert.ok(first >= 40000 && first <= 40004 && first !== 40002);
    const walk = [first, ...Array.from({ length: 7 }, () => cursor.next('192.0.2.10'))];
    // Every usable port once before any repeats, never the reserved one.
    assert.deepEqual(new Set(walk.slice(0, 4)), new Set([40000, 40001, 40003, 40004]));
    assert.ok(!walk.includes(40002));
    assert.equal(walk[4], walk[0], 'wraps to where it started');
    // Another address has a cursor of its own.
    const other = new SnatPortCursor({ low: 40000, high: 40000, reserved: new Set() });
    assert.equal(other.next('192.0.2.11'), 40000);
    assert.equal(other.next('192.0.2.12'), 40000);
  });

  it("reads this namespace's range from /proc", () => {
    const range = hostPortRange();
    assert.ok(range.low >= 1 && range.high <= 65535 && range.low <= range.high, JSON.stringify(range));
  });
});
