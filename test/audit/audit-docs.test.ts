import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { auditSinkSchema, SINK_DEFAULTS } from '../../src/audit/audit-config-schema.ts';
import { formatCef } from '../../src/audit/formats/cef-format.ts';
import { toEcs } from '../../src/audit/formats/ecs-format.ts';
import { formatSyslogMessage } from '../../src/audit/formats/syslog-message.ts';
import { hecEnvelope } from '../../src/audit/sinks/hec-sink.ts';
import type { AuditRecord } from '../../src/core/audit-event.ts';
import {
  closedRecord,
  handshakeRefusedAggregateRecord,
  identityRejectedRecord,
  permittedRecord,
  rejectedRecord,
  wouldDenyRecord,
} from './helpers/sample-records.ts';

const doc = readFileSync(new URL('../../docs/audit.md', import.meta.url), 'utf8');

/** Every shape of record the data path publishes, with every optional fact filled in somewhere. */
const records: AuditRecord[] = [
  permittedRecord(),
  permittedRecord({
    http: { method: 'GET', url: 'http://api.example.com/x', statusCode: 200 },
    certificate: { ...permittedRecord().certificate, subject: 'CN=legacy-client' } as AuditRecord['certificate'],
  }),
  closedRecord(),
  closedRecord({ parent: { address: 'proxy.corp.example', ip: '10.0.0.8', port: 3128 } }),
  rejectedRecord(),
  wouldDenyRecord(),
  identityRejectedRecord(),
  handshakeRefusedAggregateRecord(),
];

function flatten(value: unknown, prefix = ''): string[] {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return [prefix];
  return Object.entries(value as Record<string, unknown>).flatMap(([key, inner]) =>
    flatten(inner, prefix ? `${prefix}.${key}` : key),
  );
}

const mentioned = (field: string) => doc.includes(`\`${field}\``);

describe('docs/audit.md lists every field of every format', () => {
  it('documents every ECS field the formatter emits', () => {
    const fields = new Set(records.flatMap((r) => flatten(toEcs(r))));
    assert.ok(fields.size > 60, `${fields.size} fields`);
    const missing = [...fields].filter(
      (f) => !mentioned(f) && !doc.includes(`| \`${f.replace(/\.not_after$/, '.not_before')}\`, \`.not_after\``),
    );
    assert.deepEqual(missing, []);
  });

  it('documents every CEF extension key', () => {
    const keys = new Set(
      records.flatMap((r) =>
        [
          ...formatCef(r)
            .split('|')
            .slice(7)
            .join('|')
            .matchAll(/(?:^| )([A-Za-z0-9]+)=/g),
        ].map((m) => m[1] as string),
      ),
    );
    const missing = [...keys].filter(
      (k) => !doc.includes(`\`${k}\``) && !doc.includes(`\`${k}=`) && !doc.includes(`${k}\``),
    );
    assert.deepEqual(missing, []);
  });

  it('documents every structured-data parameter and every HEC envelope key', () => {
    const header = { facility: 20, hostname: 'h', appName: 'a', procId: '1', sdId: 'egw@32473', bom: false };
    const params = new Set(
      records.flatMap((r) =>
        [...formatSyslogMessage(r, 'm', header).matchAll(/ ([a-z]+)="/g)].map((m) => m[1] as string),
      ),
    );
    assert.deepEqual(
      [...params].filter((p) => !mentioned(p)),
      [],
    );
    const envelope = JSON.parse(
      hecEnvelope(permittedRecord(), '"x"', true, { source: 's', sourcetype: 't', index: 'i' }),
    );
    assert.deepEqual(
      Object.keys(envelope).filter((k) => !mentioned(k)),
      [],
    );
  });

  it('documents every sink key of the configuration schema, and the defaults table agrees', () => {
    const keys = new Set(
      auditSinkSchema.options.flatMap((option) =>
        Object.keys((option as unknown as { shape: Record<string, unknown> }).shape),
      ),
    );
    assert.ok(keys.size > 30, `${keys.size} keys`);
    assert.deepEqual(
      [...keys].filter(
        (k) =>
          !mentioned(k) &&
          !doc.includes(`\`${k}\` / `) &&
          !doc.includes(`/ \`${k}\``) &&
          !doc.includes(`\`${k}\`, `) &&
          !doc.includes(`, \`${k}\``),
      ),
      [],
    );
    assert.match(doc, new RegExp(`\\| \`queueSize\` \\| \`${SINK_DEFAULTS.queueSize}\` \\|`));
    assert.match(doc, new RegExp(`\\| \`batchSize\` \\| \`${SINK_DEFAULTS.http.batchSize}\` \\|`));
  });
});
