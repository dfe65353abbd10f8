import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { escapeCefHeader, escapeCefValue, formatCef } from '../../src/audit/formats/cef-format.ts';
import { closedRecord, identityRejectedRecord, permittedRecord, rejectedRecord } from './helpers/sample-records.ts';

/**
 * A reader written from the spec, independent of the formatter: seven header fields split on
 * unescaped `|`, then `key=value` pairs where a value runs to the next ` key=` (an unescaped `=`).
 */
function parseCef(line: string): { header: string[]; ext: Record<string, string> } {
  const header: string[] = [];
  let i = 0;
  let field = '';
  while (header.length < 7) {
    // Bounded: a line with fewer than seven unescaped `|` would otherwise read past its end forever.
    if (i >= line.length) throw new Error(`not a CEF line (${header.length} of 7 header fields): ${line}`);
    const c = line[i] as string;
    if (c === '\\' && (line[i + 1] === '|' || line[i + 1] === '\\')) {
      field += line[i + 1];
      i += 2;
    } else if (c === '|') {
      header.push(field);
      field = '';
      i += 1;
    } else {
      field += c;
      i += 1;
    }
  }
  const rest = line.slice(i);
  const ext: Record<string, string> = {};
  const keyAt = /(?:^| )([A-Za-z0-9_.]+)=/g;
  const starts: Array<{ key: string; at: number; valueAt: number }> = [];
  for (const match of rest.matchAll(keyAt)) {
    // `=` preceded by an odd number of backslashes is escaped, hence part of a value.
    const before = rest.slice(0, match.index + match[0].length - 1);
    if (/(^|[^\\])(\\\\)*\\$/.test(before)) continue;
    starts.push({ key: match[1] as string, at: match.index, valueAt: match.index + match[0].length });
  }
  starts.forEach((s, n) => {
    const end = n + 1 < starts.length ? (starts[n + 1] as { at: number }).at : rest.length;
    ext[s.key] = rest
      .slice(s.valueAt, end)
      .replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c === 'r' ? '\r' : c));
  });
  return { header, ext };
}

describe('CEF format', () => {
  it('writes the CEF:0 header with vendor, product, version, class ID, name and severity', () => {
    const { header } = parseCef(formatCef(permittedRecord()));
    assert.equal(header[0], 'CEF:0');
    assert.equal(header[1], 'mesh-egress-gateway');
    assert.equal(header[2], 'mesh-egress-gateway');
    assert.equal(header[4], 'egress-permitted');
    assert.equal(header[5], 'Egress connection permitted');
    assert.equal(header[6], '3');
  });

  it('rates refusals higher than permits, and identity refusals highest', () => {
    const severity = (line: string) => Number(parseCef(line).header[6]);
    assert.equal(severity(formatCef(rejectedRecord())), 6);
    assert.equal(severity(formatCef(identityRejectedRecord())), 7);
    assert.equal(severity(formatCef(rejectedRecord({ code: 'EGW_UPSTREAM_DNS' }))), 4);
  });

  it('maps the connection to src/spt/dst/dpt/suser/act/rt/sourceTranslatedAddress', () => {
    const record = permittedRecord();
    const { ext } = parseCef(formatCef(record));
    assert.equal(ext.src, '10.42.3.17');
    assert.equal(ext.spt, '51234');
    assert.equal(ext.dst, '198.51.100.7');
    assert.equal(ext.dpt, '443');
    assert.equal(ext.dhost, 'api.stripe.com');
    assert.equal(ext.suser, 'spiffe://prod.example.org/ns/payments/sa/checkout');
    assert.equal(ext.act, 'permit');
    assert.equal(ext.outcome, 'success');
    assert.equal(ext.rt, String(Date.parse('2026-05-01T12:00:05.250Z')));
    assert.equal(ext.sourceTranslatedAddress, '203.0.113.10');
    assert.equal(ext.sourceTranslatedPort, '40001');
    assert.equal(ext.externalId, record.id, 'event ID, for de-duplication');
    assert.equal(ext.flexString2, record.connectionId);
  });

  it('labels the custom fields: namespace, service account, rule, TLS, issuer, fingerprint, serial, not-after', () => {
    const { ext } = parseCef(formatCef(permittedRecord()));
    const labelled = (slot: string) => ({ label: ext[`${slot}Label`], value: ext[slot] });
    assert.deepEqual(labelled('cs1'), { label: 'k8sNamespace', value: 'payments' });
    assert.deepEqual(labelled('cs2'), { label: 'k8sServiceAccount', value: 'checkout' });
    assert.deepEqual(labelled('cs3'), { label: 'ruleName', value: 'payments-to-stripe' });
    assert.deepEqual(labelled('cs4'), { label: 'tlsVersionCipher', value: 'TLSv1.3 TLS_AES_256_GCM_SHA384' });
    assert.deepEqual(labelled('cs5'), {
      label: 'clientCertIssuer',
      value: 'O=SPIRE, CN=prod.example.org intermediate',
    });
    assert.deepEqual(labelled('cs6'), {
      label: 'clientCertSha256',
      value: 'C098A11D5479B5F2C7DFC3A7D01931AC9C5C9527AB9DFF3860FC5AA303764262',
    });
    assert.deepEqual(labelled('flexString1'), {
      label: 'clientCertSerial',
      value: '6A5B073E506A2728ED2E8DC56387C1D5375AC50F',
    });
    assert.deepEqual(labelled('deviceCustomDate1'), {
      label: 'clientCertNotAfter',
      value: String(Date.parse('2026-05-01T13:00:00.000Z')),
    });
  });

  it('escapes = in extension values (the issuer DN) so a reader does not see extra keys', () => {
    const line = formatCef(permittedRecord());
    assert.match(line, /cs5=O\\=SPIRE, CN\\=prod\.example\.org intermediate /);
  });

  it('reports bytes as in (client → destination) and out (destination → client), with duration and times', () => {
    const { ext } = parseCef(formatCef(closedRecord()));
    assert.equal(ext.in, '18234');
    assert.equal(ext.out, '402211');
    assert.equal(ext.act, 'close');
    assert.equal(ext.cn1Label, 'durationMs');
    assert.equal(ext.cn1, '5250');
    assert.equal(ext.start, String(Date.parse('2026-05-01T12:00:00.000Z')));
    assert.equal(ext.end, String(Date.parse('2026-05-01T12:00:05.250Z')));
  });

  it('gives a refusal act=reject, the reason and the error code', () => {
    const { ext } = parseCef(formatCef(rejectedRecord()));
    assert.equal(ext.act, 'reject');
    assert.equal(ext.reason, 'no rule matched (default deny)');
    assert.equal(ext.cat, 'EGW_POLICY_DENIED');
    assert.equal(ext.suser, 'spiffe://prod.example.org/ns/dev/sa/batch');
  });

  it('survives hostile values: backslashes, =, | and line breaks round-trip and forge no keys', () => {
    const reason = 'a\\b=c|d\r\ne act=permit';
    const line = formatCef(rejectedRecord({ reason, destination: { domain: 'x|y=z', port: 443 } }));
    assert.equal(line.includes('\n'), false);
    assert.equal(line.includes('\r'), false);
    const { header, ext } = parseCef(line);
    assert.equal(header.length, 7);
    assert.equal(ext.reason, reason);
    assert.equal(ext.dhost, 'x|y=z');
    assert.equal(ext.act, 'reject', 'the injected act=permit stayed inside reason');
  });

  it('escapes header fields: backslash and pipe, line breaks become spaces', () => {
    assert.equal(escapeCefHeader('a|b\\c'), 'a\\|b\\\\c');
    assert.equal(escapeCefHeader('x=y'), 'x=y', '= needs no escape in the header');
    assert.equal(escapeCefHeader('one\r\ntwo'), 'one two');
  });

  it('escapes extension values: backslash, =, CR, LF but not |', () => {
    assert.equal(escapeCefValue('a\\b=c|d\ne\rf'), 'a\\\\b\\=c|d\\ne\\rf');
  });

  it('truncates long values to the dictionary limit before escaping', () => {
    const { ext } = parseCef(formatCef(rejectedRecord({ reason: '='.repeat(2000) })));
    assert.equal(ext.reason, '='.repeat(1023));
  });

  it('never cuts a character in half when truncating', () => {
    const { ext } = parseCef(formatCef(rejectedRecord({ reason: `${'a'.repeat(1022)}😀tail` })));
    assert.equal(ext.reason, 'a'.repeat(1022), 'the emoji would straddle the limit, so it goes whole');
    assert.ok(!ext.reason?.includes('\uFFFD'));
  });
});
