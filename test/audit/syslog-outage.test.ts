import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { auditConfigSchema } from '../../src/audit/audit-config-schema.ts';
import type { AuditHub } from '../../src/audit/audit-hub.ts';
import { buildAuditHub } from '../../src/audit/build-audit-hub.ts';
import type { SinkStats } from '../../src/audit/sinks/audit-sink.ts';
import type { AuditRecord } from '../../src/core/audit-event.ts';
import { createRsyslogReceiver, type RsyslogReceiver } from './helpers/rsyslog-receiver.ts';
import { permittedRecord } from './helpers/sample-records.ts';
import { createSiemPki, type SiemPki } from './helpers/siem-pki.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function statsOf(hub: AuditHub): SinkStats {
  return Object.values(hub.stats())[0] as SinkStats;
}

interface Stream {
  readonly sent: AuditRecord[];
  /** Records the sink refused at `write` time (the counter moved during that call). */
  readonly droppedIds: Set<string>;
  /** Records written while the receiver was stopped. */
  readonly duringOutage: Set<string>;
  /** Records written before the receiver was first stopped. */
  readonly beforeOutage: Set<string>;
}

/**
 * Streams `count` records, one every `everyMs`, and runs `events` at their record index
 * (e.g. stop rsyslog at record 100). Which records the sink dropped is known exactly because
 * the sink drops the newest record synchronously inside `write`.
 */
async function stream(
  hub: AuditHub,
  count: number,
  everyMs: number,
  events: Map<number, () => Promise<void>>,
  outage: { active: boolean },
): Promise<Stream> {
  const result: Stream = { sent: [], droppedIds: new Set(), duringOutage: new Set(), beforeOutage: new Set() };
  let stopped = false;
  for (let i = 0; i < count; i += 1) {
    const event = events.get(i);
    if (event) await event();
    const record = permittedRecord();
    const before = statsOf(hub).dropped;
    hub.deliver(record);
    if (statsOf(hub).dropped > before) result.droppedIds.add(record.id);
    if (outage.active) result.duringOutage.add(record.id);
    stopped ||= outage.active;
    if (!stopped) result.beforeOutage.add(record.id);
    result.sent.push(record);
    await sleep(everyMs);
  }
  return result;
}

function idsIn(rsyslog: RsyslogReceiver): string[] {
  return rsyslog.messages().map((m) => /\bid="([^"]+)"/.exec(m.sd)?.[1] ?? '');
}

describe('syslog sink through a receiver outage (rsyslogd stopped mid-stream and restarted)', () => {
  let pki: SiemPki;
  let rsyslog: RsyslogReceiver;

  before(async () => {
    pki = await createSiemPki();
    rsyslog = await createRsyslogReceiver({
      tls: { ca: pki.caPath, cert: pki.server.certPath, key: pki.server.keyPath, authMode: 'x509/certvalid' },
    });
    await rsyslog.start();
  });
  after(async () => {
    await rsyslog.cleanup();
    pki.cleanup();
  });

  function tlsHub(extra: Record<string, unknown>, logs: string[]): AuditHub {
    const config = auditConfigSchema.parse({
      dropLogInterval: '300ms',
      sinks: [
        {
          type: 'syslog',
          address: `127.0.0.1:${rsyslog.tlsPort}`,
          transport: 'tls',
          ca: pki.caPath,
          cert: pki.client.certPath,
          key: pki.client.keyPath,
          format: 'cef',
          confirmInterval: '200ms',
          minBackoff: '100ms',
          maxBackoff: '400ms',
          ...extra,
        },
      ],
    });
    const hub = buildAuditHub(config, { log: (line) => logs.push(line) });
    hub.start();
    return hub;
  }

  /** rsyslog stops (SIGTERM) before record `stopAt` is written and starts again before `startAt`. */
  const outageBetween = (stopAt: number, startAt: number) => {
    const outage = { active: false };
    const events = new Map<number, () => Promise<void>>([
      [
        stopAt,
        async () => {
          outage.active = true;
          await rsyslog.stop('SIGTERM');
        },
      ],
      [
        startAt,
        async () => {
          await rsyslog.start();
          outage.active = false;
        },
      ],
    ]);
    return { outage, events };
  };

  it('loses nothing when the queue holds the outage: every record arrives, re-sends are counted as retried', async () => {
    const logs: string[] = [];
    // A confirm interval longer than the stream: the records on the open connection are still
    // unconfirmed when rsyslog stops, so the re-send path is certain to run.
    const hub = tlsHub({ confirmInterval: '5s' }, logs);
    const { outage, events } = outageBetween(80, 160);
    const sent = await stream(hub, 240, 5, events, outage);
    await hub.close(20_000);
    const stats = statsOf(hub);
    const arrived = idsIn(rsyslog);
    const unique = new Set(arrived);
    const missing = sent.sent.filter((r) => !unique.has(r.id));
    const duplicates = arrived.length - unique.size;
    const report = `stats ${JSON.stringify(stats)}; arrived ${arrived.length} (${unique.size} unique, ${duplicates} duplicates); missing ${missing.length}; written during the outage ${sent.duringOutage.size}`;
    process.stderr.write(`outage without drops: ${report}\n`);
    assert.equal(stats.received, 240, report);
    assert.equal(stats.dropped, 0, report);
    assert.equal(stats.queued, 0, report);
    assert.equal(stats.delivered, 240, report);
    assert.equal(missing.length, 0, `every record reached rsyslog's file: ${report}`);
    assert.ok(stats.retried > 0, `records on the connection rsyslog closed were sent again: ${report}`);
    assert.ok(duplicates <= stats.retried, `a duplicate in the file is always a counted re-send: ${report}`);
    assert.ok(sent.duringOutage.size > 50, report);
    assert.ok(
      logs.some((l) => l.includes('EGW_AUDIT_SINK_UNAVAILABLE')),
      logs.join('\n'),
    );
    assert.ok(
      logs.some((l) => /delivering again after \d+ failed attempts/.test(l)),
      logs.join('\n'),
    );
  });

  it('drops only what the counters report when the outage overflows the queue', async () => {
    const logs: string[] = [];
    const hub = tlsHub({ queueSize: 40 }, logs);
    const { outage, events } = outageBetween(40, 160);
    const sent = await stream(hub, 320, 5, events, outage);
    await hub.close(20_000);
    const stats = statsOf(hub);
    const unique = new Set(idsIn(rsyslog));
    const missing = sent.sent.filter((r) => !unique.has(r.id)).map((r) => r.id);
    const report = `stats ${JSON.stringify(stats)}; arrived ${sent.sent.length - missing.length} of ${sent.sent.length}; missing ${missing.length}; dropped at write ${sent.droppedIds.size}`;
    process.stderr.write(`outage with overflow: ${report}\n`);
    assert.equal(stats.received, 320, report);
    assert.ok(stats.dropped > 0, report);
    assert.equal(stats.droppedBy.queue_full, stats.dropped, `every drop was a full queue: ${report}`);
    assert.equal(stats.delivered + stats.dropped + stats.queued, stats.received, report);
    assert.equal(stats.queued, 0, report);
    assert.deepEqual(
      new Set(missing),
      sent.droppedIds,
      `the records missing from rsyslog are exactly the ones counted as dropped: ${report}`,
    );
    // Drops start when the outage has filled the queue and last until the reconnect (after a backoff) drains it.
    for (const id of sent.beforeOutage) assert.ok(unique.has(id), 'every record written before the outage arrived');
    const firstDropped = sent.sent.findIndex((r) => sent.droppedIds.has(r.id));
    assert.ok(
      firstDropped > 40,
      `nothing written before the receiver stopped (record 40) was dropped: first drop at record ${firstDropped}`,
    );
    for (const record of sent.sent.slice(-40))
      assert.ok(unique.has(record.id), `after the reconnect drained the queue, records arrive again: ${report}`);
    const dropLines = logs.filter((l) => l.includes('EGW_AUDIT_RECORDS_DROPPED'));
    assert.ok(dropLines.length >= 1, logs.join('\n'));
    const reported = dropLines.reduce(
      (sum, line) => sum + Number(/EGW_AUDIT_RECORDS_DROPPED (\d+) /.exec(line)?.[1] ?? 0),
      0,
    );
    assert.equal(reported, stats.dropped, `the drop log lines add up to the counter: ${dropLines.join('\n')}`);
    // Once per interval, not per record: how many intervals the outage spans depends on the
    // machine's load, so the bound is against the records, not a fixed count of lines.
    assert.ok(
      dropLines.length * 2 < stats.dropped,
      `drops are logged once per interval, not per record: ${dropLines.length} lines for ${stats.dropped} drops`,
    );
  });
});
