import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { auditConfigSchema } from '../../src/audit/audit-config-schema.ts';
import { buildAuditHub } from '../../src/audit/build-audit-hub.ts';
import { publishAudit } from '../../src/core/audit-event.ts';
import { isGatewayError } from '../../src/core/errors.ts';
import { freePort } from '../helpers/loopback-ports.ts';
import { permittedRecord } from './helpers/sample-records.ts';

describe('audit hub', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'egw-audit-hub-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('hands each record published on the data path channel to every sink, each in its own format', async () => {
    const hub = buildAuditHub(
      auditConfigSchema.parse({
        sinks: [
          { type: 'file', path: join(dir, 'a.jsonl'), format: 'ecs' },
          { type: 'file', path: join(dir, 'a.cef'), format: 'cef' },
          { type: 'file', path: join(dir, 'a.txt'), format: 'text', name: 'human' },
        ],
      }),
    );
    hub.start();
    const { id: _id, timestamp: _timestamp, ...record } = permittedRecord();
    publishAudit(record);
    await hub.close(2000);
    const ecs = JSON.parse(readFileSync(join(dir, 'a.jsonl'), 'utf8'));
    const cef = readFileSync(join(dir, 'a.cef'), 'utf8');
    const text = readFileSync(join(dir, 'a.txt'), 'utf8');
    assert.equal(ecs.source.user.id, 'spiffe://prod.example.org/ns/payments/sa/checkout');
    assert.match(cef, new RegExp(` externalId=${ecs.event.id}\\n$`), 'the same record, with the same event.id');
    assert.match(text, new RegExp(` id=${ecs.event.id}\\n$`));
    assert.deepEqual(Object.keys(hub.stats()), ['file#0', 'file#1', 'human']);
  });

  it('counts a record a formatter cannot encode as format_error instead of throwing into the publisher', async () => {
    const port = await freePort();
    const hub = buildAuditHub(
      auditConfigSchema.parse({ sinks: [{ type: 'syslog', address: `127.0.0.1:${port}`, transport: 'tcp' }] }),
      { log: () => {} },
    );
    hub.start();
    assert.doesNotThrow(() => hub.deliver(permittedRecord({ timestamp: 'not a time' })));
    await hub.close(50);
    const stats = Object.values(hub.stats())[0];
    assert.deepEqual(stats?.droppedBy, { format_error: 1 });
  });

  it('logs drops once per interval per sink, with the totals, not once per record', async () => {
    const logs: string[] = [];
    const hub = buildAuditHub(
      auditConfigSchema.parse({
        dropLogInterval: '100ms',
        sinks: [{ type: 'file', path: join(dir, 'tiny.log'), queueSize: 1 }],
      }),
      {
        log: (line) => logs.push(line),
      },
    );
    hub.start();
    for (let i = 0; i < 50; i += 1) hub.deliver(permittedRecord()); // one fits; the writer is asynchronous
    await new Promise((r) => setTimeout(r, 350));
    assert.equal(logs.length, 1, logs.join('\n'));
    assert.match(
      logs[0] ?? '',
      /^audit sink file#0: EGW_AUDIT_RECORDS_DROPPED 49 records dropped since the last report \(totals: received 50, delivered 1, retried 0, dropped 49 \[queue_full 49\], queued 0\)$/,
    );
    for (let i = 0; i < 3; i += 1) hub.deliver(permittedRecord());
    await hub.close(1000);
    assert.equal(logs.length, 2, logs.join('\n'));
    assert.match(logs[1] ?? '', /EGW_AUDIT_RECORDS_DROPPED 2 records dropped/);
  });

  it('returns from close within the timeout when a receiver is down, counting what it could not send', async () => {
    const port = await freePort();
    const hub = buildAuditHub(
      auditConfigSchema.parse({
        sinks: [{ type: 'syslog', address: `127.0.0.1:${port}`, transport: 'tcp', minBackoff: '50ms' }],
      }),
      { log: () => {} },
    );
    hub.start();
    for (let i = 0; i < 10; i += 1) hub.deliver(permittedRecord());
    const started = Date.now();
    await hub.close(300);
    const elapsed = Date.now() - started;
    // Bounded by the timeout, not by the receiver's backoff: generous upper bound for loaded CI.
    assert.ok(elapsed >= 290 && elapsed < 5000, `close took ${elapsed} ms`);
    const stats = Object.values(hub.stats())[0];
    assert.deepEqual([stats?.received, stats?.delivered, stats?.dropped, stats?.queued], [10, 0, 10, 0]);
  });

  it('fails at build time, with EGW_AUDIT_SINK_INVALID, when a TLS file is missing', () => {
    const config = auditConfigSchema.parse({
      sinks: [{ type: 'syslog', address: '127.0.0.1:6514', transport: 'tls', ca: join(dir, 'missing-ca.pem') }],
    });
    assert.throws(
      () => buildAuditHub(config),
      (error) =>
        isGatewayError(error, 'EGW_AUDIT_SINK_INVALID') &&
        /syslog#0: ca .*missing-ca\.pem/.test((error as Error).message),
    );
  });
});
