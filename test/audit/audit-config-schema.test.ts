import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { auditConfigSchema } from '../../src/audit/audit-config-schema.ts';

function issues(value: unknown): string[] {
  const result = auditConfigSchema.safeParse(value);
  assert.equal(result.success, false, 'expected the audit section to be rejected');
  return (result.error?.issues ?? []).map((issue) => `${issue.path.join('.')}: ${issue.message}`);
}

describe('audit config schema', () => {
  it('accepts the four sink kinds exactly as the issue writes them', () => {
    const config = auditConfigSchema.parse(
      parse(`
sinks:
  - { type: stdout, format: ecs }
  - { type: file, path: /var/log/egress/audit.jsonl, format: ecs }
  - { type: syslog, address: siem.example:6514, transport: tls, ca: certs/siem-ca.pem, cert: certs/siem-client.pem, key: certs/siem-client.key, format: cef }
  - { type: http, url: https://splunk.example:8088/services/collector/event, token: "...", ca: certs/splunk-ca.pem, format: ecs, batchSize: 100, flushInterval: 1s }
`),
    );
    assert.equal(config.sinks.length, 4);
    const http = config.sinks[3];
    assert.equal(http?.type === 'http' && http.flushInterval, 1000);
  });

  it('defaults to one stdout sink in ECS', () => {
    assert.deepEqual(auditConfigSchema.parse(undefined).sinks, [{ type: 'stdout', format: 'ecs' }]);
    assert.deepEqual(auditConfigSchema.parse({}).sinks, [{ type: 'stdout', format: 'ecs' }]);
  });

  it('parses durations and queue sizes', () => {
    const config = auditConfigSchema.parse({
      dropLogInterval: '30s',
      sinks: [
        {
          type: 'syslog',
          address: '127.0.0.1:514',
          transport: 'tcp',
          confirmInterval: '250ms',
          minBackoff: 100,
          maxBackoff: '1m',
          queueSize: 50,
        },
      ],
    });
    const sink = config.sinks[0];
    assert.equal(config.dropLogInterval, 30_000);
    assert.ok(sink?.type === 'syslog');
    assert.equal(sink.confirmInterval, 250);
    assert.equal(sink.maxBackoff, 60_000);
    assert.equal(sink.queueSize, 50);
  });

  it('rejects TLS files on a plain TCP or UDP syslog sink', () => {
    assert.deepEqual(issues({ sinks: [{ type: 'syslog', address: 'h:514', transport: 'tcp', ca: 'ca.pem' }] }), [
      'sinks.0.ca: only valid with transport: tls',
    ]);
    assert.ok(
      issues({ sinks: [{ type: 'syslog', address: 'h:514', transport: 'udp', framing: 'lf' }] }).includes(
        'sinks.0.framing: only valid with transport: tcp or tls',
      ),
    );
  });

  it('requires a client certificate and its key together', () => {
    assert.deepEqual(issues({ sinks: [{ type: 'syslog', address: 'h:6514', transport: 'tls', cert: 'c.pem' }] }), [
      'sinks.0.key: cert and key go together (a client certificate needs its key)',
    ]);
  });

  it('requires exactly one of token and tokenFile for the HEC sink', () => {
    assert.deepEqual(issues({ sinks: [{ type: 'http', url: 'https://h:8088/services/collector/event' }] }), [
      'sinks.0.token: set exactly one of token and tokenFile',
    ]);
    assert.equal(issues({ sinks: [{ type: 'http', url: 'https://h/', token: 't', tokenFile: 'f' }] }).length, 1);
  });

  it('rejects a CA for a plain http:// HEC URL and non-HTTP URLs', () => {
    assert.deepEqual(issues({ sinks: [{ type: 'http', url: 'http://h:8088/', token: 't', ca: 'ca.pem' }] }), [
      'sinks.0.ca: only valid with an https:// url',
    ]);
    assert.ok(issues({ sinks: [{ type: 'http', url: 'ftp://h/', token: 't' }] })[0]?.startsWith('sinks.0.url:'));
  });

  it('names the bad key: unknown keys, transports, formats and addresses', () => {
    assert.ok(issues({ sinks: [{ type: 'stdout', fromat: 'ecs' }] }).some((i) => i.includes('fromat')));
    assert.ok(
      issues({ sinks: [{ type: 'syslog', address: 'h:514', transport: 'relp' }] }).some((i) =>
        i.startsWith('sinks.0.transport'),
      ),
    );
    assert.ok(issues({ sinks: [{ type: 'stdout', format: 'leef' }] }).some((i) => i.startsWith('sinks.0.format')));
    assert.ok(
      issues({ sinks: [{ type: 'syslog', address: 'no-port', transport: 'tcp' }] }).some((i) =>
        i.startsWith('sinks.0.address: expected host:port'),
      ),
    );
  });

  it('rejects two sinks with the same name, and a backoff whose maximum is below its minimum', () => {
    assert.deepEqual(
      issues({
        sinks: [
          { type: 'stdout', name: 'siem' },
          { type: 'file', path: 'a', name: 'siem' },
        ],
      }),
      ['sinks.1.name: duplicate sink name "siem"'],
    );
    assert.deepEqual(
      issues({ sinks: [{ type: 'syslog', address: 'h:1', transport: 'tcp', minBackoff: '2s', maxBackoff: '1s' }] }),
      ['sinks.0.maxBackoff: must not be smaller than minBackoff'],
    );
  });
});
