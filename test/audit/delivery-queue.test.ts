import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DeliveryQueue } from '../../src/audit/sinks/delivery-queue.ts';

describe('DeliveryQueue', () => {
  it('bounds the bytes it holds, not only the record count, and counts the overflow as queue_full', () => {
    const queue = new DeliveryQueue(1_000, 10_000);
    const record = Buffer.alloc(4_000);
    assert.equal(queue.offer(record), true);
    assert.equal(queue.offer(record), true);
    assert.equal(queue.offer(record), false, 'a third 4 KB record would exceed 10 KB');
    assert.equal(queue.bytes, 8_000);
    assert.deepEqual(queue.stats().droppedBy, { queue_full: 1 });
  });

  it('frees bytes on delivery and on drops, but not on retries (a retried record is still held)', () => {
    const queue = new DeliveryQueue(1_000, 10_000);
    queue.offer(Buffer.alloc(4_000));
    queue.offer(Buffer.alloc(4_000));
    const first = queue.take(1);
    queue.retry(first);
    assert.equal(queue.bytes, 8_000);
    queue.delivered(queue.take(1));
    assert.equal(queue.bytes, 4_000);
    queue.drop(queue.take(1), 'rejected');
    assert.equal(queue.bytes, 0);
    const stats = queue.stats();
    assert.equal(stats.received, stats.delivered + stats.dropped + stats.queued);
  });
});
