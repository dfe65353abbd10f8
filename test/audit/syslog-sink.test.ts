import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { auditConfigSchema } from '../../src/audit/audit-config-schema.ts';
import type { AuditHub } from '../../src/audit/audit-hub.ts';
import { buildAuditHub } from '../../src/audit/build-audit-hub.ts';
import { freeUdpPort } from '../helpers/loopback-ports.ts';
import { pollUntil } from '../helpers/poll-until.ts';
import { createRsyslogReceiver, type RsyslogReceiver } from './helpers/rsyslog-receiver.ts';
import { closedRecord, permittedRecord, rejectedRecord } from './helpers/sample-records.ts';
import { createSiemPki, type SiemPki } from './helpers/siem-pki.ts';

function hubFor(sink: Record<string, unknown>, logs: string[] = []): AuditHub {
  return buildAuditHub(auditConfigSchema.parse({ sinks: [sink] }), { log: (line) => logs.push(line) });
}

function only<T>(stats: Record<string, T>): T {
  const values = Object.values(stats);
  assert.equal(values.length, 1);
  return values[0] as T;
}

describe('syslog sink against a real rsyslogd', () => {
  let pki: SiemPki;
  let rsyslog: RsyslogReceiver;

  before(async () => {
    pki = await createSiemPki();
    rsyslog = await createRsyslogReceiver({
      tcp: true,
      udp: true,
      tls: { ca: pki.caPath, cert: pki.server.certPath, key: pki.server.keyPath, authMode: 'x509/certvalid' },
    });
    await rsyslog.start();
  });
  after(async () => {
    await rsyslog.cleanup();
    pki.cleanup();
  });

  it('delivers CEF over mutual TLS (RFC 5425) with RFC 5424 header and structured data that rsyslog parses', async () => {
    const hub = hubFor({
      type: 'syslog',
      address: `127.0.0.1:${rsyslog.tlsPort}`,
      transport: 'tls',
      ca: pki.caPath,
      cert: pki.client.certPath,
      key: pki.client.keyPath,
      format: 'cef',
      confirmInterval: '200ms',
    });
    hub.start();
    const permitted = permittedRecord();
    const rejected = rejectedRecord();
    hub.deliver(permitted);
    hub.deliver(rejected);
    await hub.close(10_000);
    const messages = await rsyslog.waitFor((all) => all.some((m) => m.sd.includes(rejected.id)));
    const p = messages.find((m) => m.sd.includes(permitted.id));
    const r = messages.find((m) => m.sd.includes(rejected.id));
    assert.ok(p && r, `both records arrived: ${JSON.stringify(messages)}`);
    assert.equal(p.input, 'imtcp');
    assert.equal(p.pri, '166', 'local4.info');
    assert.equal(r.pri, '165', 'local4.notice');
    assert.equal(p.version, '1');
    assert.equal(p.app, 'egress-gateway');
    assert.equal(p.procid, String(process.pid));
    assert.equal(p.msgid, 'egress-permitted');
    assert.equal(r.msgid, 'egress-rejected');
    assert.equal(p.timestamp, '2026-05-01T12:00:05.250Z', 'the record time, not the reception time');
    assert.match(
      p.sd,
      /^\[egw@32473 id="[^"]+" conn="[^"]+" action="egress-permitted" spiffe="spiffe:\/\/prod\.example\.org\/ns\/payments\/sa\/checkout" /,
    );
    assert.match(
      p.msg,
      /^CEF:0\|mesh-egress-gateway\|mesh-egress-gateway\|[^|]+\|egress-permitted\|Egress connection permitted\|3\|/,
    );
    assert.match(p.msg, / suser=spiffe:\/\/prod\.example\.org\/ns\/payments\/sa\/checkout /);
    assert.match(r.msg, / act=reject outcome=success reason=no rule matched \(default deny\) cat=EGW_POLICY_DENIED /);
    const stats = only(hub.stats());
    assert.equal(stats.delivered, 2);
    assert.equal(stats.dropped, 0);
    assert.equal(stats.queued, 0);
  });

  it('delivers ECS over plain TCP with octet counting, JSON intact in MSG', async () => {
    const hub = hubFor({
      type: 'syslog',
      address: `127.0.0.1:${rsyslog.tcpPort}`,
      transport: 'tcp',
      format: 'ecs',
      appName: 'egw-test',
      facility: 'auth',
    });
    hub.start();
    const record = closedRecord();
    hub.deliver(record);
    await hub.close(10_000);
    const [message] = (await rsyslog.waitFor((all) => all.some((m) => m.sd.includes(record.id)))).filter((m) =>
      m.sd.includes(record.id),
    );
    assert.ok(message);
    assert.equal(message.app, 'egw-test');
    assert.equal(message.pri, String(4 * 8 + 6));
    const doc = JSON.parse(message.msg);
    assert.equal(doc.event.id, record.id);
    assert.equal(doc.source.user.id, 'spiffe://prod.example.org/ns/payments/sa/checkout');
    assert.equal(doc.destination.bytes, 402_211);
  });

  it('delivers with LF framing when asked (RFC 6587 non-transparent framing)', async () => {
    const hub = hubFor({
      type: 'syslog',
      address: `127.0.0.1:${rsyslog.tcpPort}`,
      transport: 'tcp',
      format: 'text',
      framing: 'lf',
    });
    hub.start();
    const records = [permittedRecord(), permittedRecord(), permittedRecord()];
    for (const record of records) hub.deliver(record);
    await hub.close(10_000);
    const messages = await rsyslog.waitFor((all) => records.every((r) => all.some((m) => m.sd.includes(r.id))));
    const text = messages.find((m) => m.sd.includes(records[1]?.id ?? '-'));
    assert.match(
      text?.msg ?? '',
      /^2026-05-01T12:00:05\.250Z PERMITTED spiffe:\/\/prod\.example\.org\/ns\/payments\/sa\/checkout -> api\.stripe\.com:443 /,
    );
  });

  it('sends one datagram per record over UDP', async () => {
    const hub = hubFor({ type: 'syslog', address: `127.0.0.1:${rsyslog.udpPort}`, transport: 'udp', format: 'cef' });
    hub.start();
    const record = rejectedRecord();
    hub.deliver(record);
    await hub.close(5_000);
    const messages = await rsyslog.waitFor((all) => all.some((m) => m.sd.includes(record.id)));
    const message = messages.find((m) => m.sd.includes(record.id));
    assert.equal(message?.input, 'imudp');
    assert.match(message?.msg ?? '', /^CEF:0\|/);
    assert.equal(only(hub.stats()).delivered, 1);
  });

  it('reports ICMP port unreachable on UDP in the log and lastError, since UDP cannot say which datagram was lost', async () => {
    const closedPort = await freeUdpPort(); // nothing listens there on UDP
    const logs: string[] = [];
    const hub = hubFor({ type: 'syslog', address: `127.0.0.1:${closedPort}`, transport: 'udp' }, logs);
    hub.start();
    for (let i = 0; i < 3; i += 1) {
      hub.deliver(permittedRecord());
      await new Promise((r) => setTimeout(r, 100));
    }
    await hub.close(500);
    const stats = only(hub.stats());
    assert.equal(stats.delivered, 3, 'sent is all UDP can know');
    assert.match(stats.lastError ?? '', /ECONNREFUSED/);
    assert.equal(
      logs.filter((l) =>
        /EGW_AUDIT_SINK_UNAVAILABLE udp:\/\/.*ECONNREFUSED; UDP cannot tell which datagrams were lost/.test(l),
      ).length,
      1,
      logs.join('\n'),
    );
  });

  it('never counts a record as delivered when rsyslog refuses the client certificate', async () => {
    const logs: string[] = [];
    const hub = hubFor(
      {
        type: 'syslog',
        address: `127.0.0.1:${rsyslog.tlsPort}`,
        transport: 'tls',
        ca: pki.caPath,
        cert: pki.strangerClient.certPath,
        key: pki.strangerClient.keyPath,
        confirmInterval: '100ms',
        minBackoff: '100ms',
        maxBackoff: '200ms',
      },
      logs,
    );
    hub.start();
    const record = permittedRecord();
    hub.deliver(record);
    await pollUntil(
      () => only(hub.stats()).retried,
      (n) => n >= 3,
      10_000,
      'three re-sends',
    );
    const during = only(hub.stats());
    assert.ok(during.retried >= 3, `re-sent after each refused session: ${JSON.stringify(during)}`);
    assert.equal(during.delivered, 0);
    assert.equal(during.queued, 1);
    assert.equal(during.up, false);
    await hub.close(300);
    const final = only(hub.stats());
    assert.deepEqual([final.received, final.delivered, final.dropped, final.queued], [1, 0, 1, 0]);
    assert.deepEqual(final.droppedBy, { shutdown: 1 });
    assert.equal(
      logs.filter((l) => l.includes('EGW_AUDIT_SINK_UNAVAILABLE')).length,
      1,
      `one line per outage, not per retry: ${logs.join('\n')}`,
    );
    assert.ok(
      logs.some((l) => l.includes('EGW_AUDIT_RECORDS_DROPPED 1 records dropped')),
      logs.join('\n'),
    );
    assert.equal(
      rsyslog.messages().some((m) => m.sd.includes(record.id)),
      false,
    );
  });

  it('queues while the receiver is down at start-up, then delivers when it comes up', async () => {
    const late = await createRsyslogReceiver({ tcp: true });
    const logs: string[] = [];
    const hub = hubFor(
      {
        type: 'syslog',
        address: `127.0.0.1:${late.tcpPort}`,
        transport: 'tcp',
        confirmInterval: '100ms',
        minBackoff: '100ms',
        maxBackoff: '300ms',
      },
      logs,
    );
    try {
      hub.start();
      const records = Array.from({ length: 5 }, () => permittedRecord());
      for (const record of records) hub.deliver(record);
      // Wait for the failed connect itself (a positive event), not a fixed sleep: only then does
      // "nothing delivered" mean the sink tried and held the records.
      const down = await pollUntil(
        () => only(hub.stats()),
        (s) => s.lastError !== undefined,
        5_000,
        'the sink to report its failed connect',
      );
      assert.equal(down.up, false);
      assert.equal(down.queued, 5);
      assert.equal(down.delivered, 0);
      await late.start();
      await late.waitFor((all) => records.every((r) => all.some((m) => m.sd.includes(r.id))));
      await hub.close(5_000);
      const up = only(hub.stats());
      assert.equal(up.delivered, 5);
      assert.equal(up.up, true);
      assert.ok(
        logs.some((l) => /delivering again after \d+ failed attempts/.test(l)),
        logs.join('\n'),
      );
    } finally {
      await hub.close(100);
      await late.cleanup();
    }
  });
});
