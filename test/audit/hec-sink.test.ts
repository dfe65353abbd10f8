import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { auditConfigSchema } from '../../src/audit/audit-config-schema.ts';
import type { AuditHub } from '../../src/audit/audit-hub.ts';
import { buildAuditHub } from '../../src/audit/build-audit-hub.ts';
import type { SinkStats } from '../../src/audit/sinks/audit-sink.ts';
import { freePort } from '../helpers/loopback-ports.ts';
import { pollUntil } from '../helpers/poll-until.ts';
import { type HecReceiver, startHecReceiver } from './helpers/hec-receiver.ts';
import { permittedRecord, rejectedRecord } from './helpers/sample-records.ts';
import { createSiemPki, type SiemPki } from './helpers/siem-pki.ts';

const TOKEN = '3f1c2a9e-0000-4000-8000-hec-test-token';

function statsOf(hub: AuditHub): SinkStats {
  return Object.values(hub.stats())[0] as SinkStats;
}

describe('HEC sink against a local HTTPS receiver', () => {
  let pki: SiemPki;
  let hec: HecReceiver;
  const hubs: AuditHub[] = [];

  function hubFor(sink: Record<string, unknown>, logs: string[] = []): AuditHub {
    const hub = buildAuditHub(
      auditConfigSchema.parse({
        sinks: [
          {
            type: 'http',
            url: hec.url,
            token: TOKEN,
            ca: pki.caPath,
            format: 'ecs',
            minBackoff: '100ms',
            maxBackoff: '300ms',
            ...sink,
          },
        ],
      }),
      { log: (line) => logs.push(line) },
    );
    hub.start();
    hubs.push(hub);
    return hub;
  }

  before(async () => {
    pki = await createSiemPki();
    hec = await startHecReceiver({ cert: pki.server.certPath, key: pki.server.keyPath, token: TOKEN });
  });
  after(async () => {
    await Promise.all(hubs.map((h) => h.close(100)));
    await hec.close();
    pki.cleanup();
  });

  function reset(): void {
    hec.requests.length = 0;
    hec.answer = () => ({ status: 200, body: '{"text":"Success","code":0}' });
  }

  it('sends full batches at once and the rest after flushInterval, as concatenated envelopes with the Splunk token', async () => {
    reset();
    const hub = hubFor({ batchSize: 3, flushInterval: '300ms' });
    const records = Array.from({ length: 7 }, () => permittedRecord());
    const started = Date.now();
    for (const record of records) hub.deliver(record);
    await hec.waitFor((r) => r.accepted().length === 7);
    assert.deepEqual(
      hec.requests.map((r) => r.envelopes?.length),
      [3, 3, 1],
    );
    const last = hec.requests[2];
    assert.ok(
      last && last.at - started >= 250,
      `the partial batch waited for flushInterval (${last && last.at - started} ms)`,
    );
    const first = hec.requests[0];
    assert.ok(first);
    assert.equal(first.headers.authorization, `Splunk ${TOKEN}`);
    assert.equal(first.headers['content-type'], 'application/json');
    assert.match(String(first.headers['x-splunk-request-channel']), /^[0-9a-f-]{36}$/);
    assert.match(first.body, /^\{"time":\d+\.\d{3},/);
    assert.ok(first.body.includes('}{"time"'), 'no array, no commas, no separators between envelopes');
    const envelope = first.envelopes?.[0] as {
      time: number;
      host: string;
      source: string;
      sourcetype: string;
      event: { event: { id: string }; source: { user: { id: string } } };
    };
    assert.equal(envelope.time, Date.parse('2026-05-01T12:00:05.250Z') / 1000);
    assert.equal(typeof envelope.host, 'string');
    assert.equal(envelope.source, 'mesh-egress-gateway');
    assert.equal(envelope.sourcetype, '_json');
    assert.equal(envelope.event.event.id, records[0]?.id, 'event is the ECS document as an object');
    assert.equal(envelope.event.source.user.id, 'spiffe://prod.example.org/ns/payments/sa/checkout');
    await hub.close(2000);
    const stats = statsOf(hub);
    assert.deepEqual([stats.received, stats.delivered, stats.retried, stats.dropped, stats.queued], [7, 7, 0, 0, 0]);
  });

  it('retries 503 "Server is busy" with backoff until it succeeds, counting the re-sends', async () => {
    reset();
    hec.answer = (index) => (index < 2 ? { status: 503, body: '{"text":"Server is busy","code":9}' } : { status: 200 });
    const logs: string[] = [];
    const hub = hubFor({ batchSize: 2, flushInterval: '50ms' }, logs);
    const records = [permittedRecord(), rejectedRecord()];
    for (const record of records) hub.deliver(record);
    await hec.waitFor((r) => r.accepted().length === 2);
    await hub.close(2000);
    assert.deepEqual(
      hec.requests.map((r) => r.status),
      [503, 503, 200],
    );
    const gaps = hec.requests.slice(1).map((r, i) => r.at - (hec.requests[i] as { at: number }).at);
    assert.ok(
      gaps.every((gap) => gap >= 45),
      `backoff between attempts (min 100 ms, equal jitter ≥ 50 ms): ${gaps.join(', ')}`,
    );
    assert.deepEqual(
      hec.accepted().map((e) => (e.event as { event: { id: string } }).event.id),
      records.map((r) => r.id),
    );
    const stats = statsOf(hub);
    assert.deepEqual([stats.received, stats.delivered, stats.retried, stats.dropped], [2, 2, 4, 0]);
    assert.equal(logs.filter((l) => l.includes('EGW_AUDIT_SINK_UNAVAILABLE')).length, 1, logs.join('\n'));
    assert.match(logs.join('\n'), /HTTP 503: \{"text":"Server is busy","code":9\}/);
  });

  it('does not retry a 400 or a bad token: the batch is dropped as rejected and logged', async () => {
    reset();
    hec.answer = () => ({ status: 400, body: '{"text":"Incorrect index","code":7}' });
    const logs: string[] = [];
    const hub = hubFor({ batchSize: 1, flushInterval: '20ms' }, logs);
    hub.deliver(permittedRecord());
    hub.deliver(permittedRecord());
    await hec.waitFor((r) => r.requests.length === 2);
    // Once both batches are dropped nothing is left that could be retried: no fixed sleep needed.
    await pollUntil(
      () => statsOf(hub).dropped,
      (n) => n === 2,
      5_000,
      'both rejected batches to be dropped',
    );
    assert.equal(hec.requests.length, 2, 'no retry');
    const stats = statsOf(hub);
    assert.deepEqual([stats.delivered, stats.retried, stats.dropped, stats.queued], [0, 0, 2, 0]);
    assert.deepEqual(stats.droppedBy, { rejected: 2 });
    assert.equal(
      logs.filter((l) => l.includes('EGW_AUDIT_RECEIVER_REJECTED HTTP 400')).length,
      1,
      `logged once per run of refusals: ${logs.join('\n')}`,
    );

    reset();
    const wrongToken = hubFor({ token: 'not-the-token', batchSize: 1 });
    wrongToken.deliver(permittedRecord());
    await wrongToken.flush(2000);
    assert.deepEqual(
      hec.requests.map((r) => r.status),
      [403],
    );
    assert.deepEqual(statsOf(wrongToken).droppedBy, { rejected: 1 });
  });

  it('reads a rotated tokenFile again after a 403 and delivers with the new token', async () => {
    reset();
    const tokenFile = join(pki.dir, 'hec-token');
    writeFileSync(tokenFile, 'old-token\n');
    const hub = hubFor({ token: undefined, tokenFile, batchSize: 1 });
    writeFileSync(tokenFile, `${TOKEN}\n`); // rotated after start-up
    hub.deliver(permittedRecord());
    await hub.flush(3000);
    assert.deepEqual(
      hec.requests.map((r) => r.status),
      [403, 200],
    );
    assert.equal(statsOf(hub).delivered, 1);
  });

  it('gives up after maxRetries and counts the batch as retries_exhausted', async () => {
    reset();
    hec.answer = () => ({ status: 500, body: '{"text":"Internal server error","code":8}' });
    const hub = hubFor({ batchSize: 1, maxRetries: 2 });
    hub.deliver(permittedRecord());
    await hub.flush(5000);
    assert.equal(hec.requests.length, 3, 'the first attempt and two retries');
    const stats = statsOf(hub);
    assert.deepEqual([stats.delivered, stats.retried, stats.dropped], [0, 2, 1]);
    assert.deepEqual(stats.droppedBy, { retries_exhausted: 1 });
  });

  it('times out a receiver that never answers and retries', async () => {
    reset();
    hec.answer = (index) => (index === 0 ? 'hang' : { status: 200 });
    const hub = hubFor({ batchSize: 1, timeout: '300ms' });
    const record = permittedRecord();
    hub.deliver(record);
    await hub.flush(5000);
    assert.deepEqual(
      hec.accepted().map((e) => (e.event as { event: { id: string } }).event.id),
      [record.id],
    );
    assert.equal(statsOf(hub).retried, 1);
    assert.match(statsOf(hub).lastError ?? '', /abort|timeout/i);
  });

  it('sends CEF and text as string events', async () => {
    reset();
    const hub = hubFor({ format: 'cef', batchSize: 1, sourcetype: 'cef', index: 'security' });
    hub.deliver(rejectedRecord());
    await hub.flush(2000);
    const envelope = hec.accepted()[0] as { event: string; sourcetype: string; index: string };
    assert.match(envelope.event, /^CEF:0\|.* suser=spiffe:\/\/prod\.example\.org\/ns\/dev\/sa\/batch /);
    assert.equal(envelope.sourcetype, 'cef');
    assert.equal(envelope.index, 'security');
  });

  it('queues while the receiver is down at start-up and delivers once it listens', async () => {
    const port = await freePort();
    const logs: string[] = [];
    const hub = buildAuditHub(
      auditConfigSchema.parse({
        sinks: [
          {
            type: 'http',
            url: `https://127.0.0.1:${port}/services/collector/event`,
            token: TOKEN,
            ca: pki.caPath,
            batchSize: 1,
            minBackoff: '100ms',
            maxBackoff: '200ms',
          },
        ],
      }),
      { log: (line) => logs.push(line) },
    );
    hub.start();
    hubs.push(hub);
    const record = permittedRecord();
    hub.deliver(record);
    // Wait for the refused connect itself rather than a fixed sleep.
    await pollUntil(
      () => statsOf(hub),
      (s) => s.lastError !== undefined,
      5_000,
      'the sink to report its refused connect',
    );
    assert.equal(statsOf(hub).up, false);
    assert.equal(statsOf(hub).queued, 1);
    assert.match(statsOf(hub).lastError ?? '', /ECONNREFUSED/);
    const late = await startHecReceiver({ cert: pki.server.certPath, key: pki.server.keyPath, token: TOKEN, port });
    try {
      await hub.flush(5000);
      assert.equal(late.accepted().length, 1);
      assert.equal(statsOf(hub).delivered, 1);
      assert.ok(statsOf(hub).retried >= 1);
    } finally {
      await late.close();
    }
  });
});
