import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatCef } from '../../src/audit/formats/cef-format.ts';
import {
  escapeSdValue,
  formatSyslogMessage,
  frameLineFeed,
  frameOctetCounted,
  headerField,
  isSdName,
} from '../../src/audit/formats/syslog-message.ts';
import { closedRecord, identityRejectedRecord, permittedRecord, rejectedRecord } from './helpers/sample-records.ts';

const header = {
  facility: 20,
  hostname: 'egw-0',
  appName: 'egress-gateway',
  procId: '4242',
  sdId: 'egw@32473',
  bom: false,
};

describe('RFC 5424 syslog message', () => {
  it('has PRI, VERSION 1, an RFC 3339 timestamp, host, app, procid, the action as MSGID, SD and MSG', () => {
    const record = permittedRecord();
    const message = formatSyslogMessage(record, 'BODY', header);
    assert.equal(
      message,
      `<166>1 2026-05-01T12:00:05.250Z egw-0 egress-gateway 4242 egress-permitted [egw@32473 id="${record.id}" conn="${record.connectionId}" action="egress-permitted" spiffe="spiffe://prod.example.org/ns/payments/sa/checkout" src="10.42.3.17" spt="51234" dst="api.stripe.com" dpt="443" rule="payments-to-stripe"] BODY`,
    );
  });

  it('computes PRI as facility × 8 + severity (info for permits, notice for refusals, warning for identity)', () => {
    const pri = (message: string) => Number(/^<(\d+)>/.exec(message)?.[1]);
    assert.equal(pri(formatSyslogMessage(closedRecord(), '', header)), 20 * 8 + 6);
    assert.equal(pri(formatSyslogMessage(rejectedRecord(), '', header)), 20 * 8 + 5);
    assert.equal(pri(formatSyslogMessage(identityRejectedRecord(), '', { ...header, facility: 4 })), 4 * 8 + 4);
  });

  it('escapes only ", \\ and ] inside SD parameter values', () => {
    assert.equal(escapeSdValue('a"b\\c]d[e=f'), 'a\\"b\\\\c\\]d[e=f');
    const message = formatSyslogMessage(rejectedRecord({ destination: { domain: 'x"]y\\', port: 1 } }), 'm', header);
    assert.match(message, / dst="x\\"\\]y\\\\" dpt="1" /);
  });

  it('puts the rejection code in structured data, and addresses and ports in separate parameters', () => {
    const message = formatSyslogMessage(rejectedRecord({ source: { ip: '2001:db8::1', port: 5 } }), 'm', header);
    assert.match(message, / src="2001:db8::1" spt="5" /);
    assert.match(message, / code="EGW_POLICY_DENIED"\] m$/);
  });

  it('writes NILVALUE for empty header fields and strips characters outside printable ASCII', () => {
    assert.equal(headerField('', 48), '-');
    assert.equal(headerField('egw 0\tå', 255), 'egw0');
    assert.equal(headerField('x'.repeat(60), 48).length, 48);
    const message = formatSyslogMessage(identityRejectedRecord(), 'm', { ...header, hostname: '' });
    assert.match(message, /^<164>1 \S+ - egress-gateway /);
  });

  it('validates SD-IDs: at most 32 printable characters without =, space, ] or "', () => {
    assert.equal(isSdName('egw@32473'), true);
    assert.equal(isSdName('bad id'), false);
    assert.equal(isSdName('a=b'), false);
    assert.equal(isSdName('x'.repeat(33)), false);
  });

  it('adds the UTF-8 BOM before MSG only when asked', () => {
    const record = permittedRecord();
    assert.equal(formatSyslogMessage(record, 'CEF:0|x', header).includes('\ufeff'), false);
    assert.ok(formatSyslogMessage(record, 'CEF:0|x', { ...header, bom: true }).endsWith('] \ufeffCEF:0|x'));
  });

  it('frames by octet count (RFC 6587/5425): the length counts UTF-8 bytes, not characters', () => {
    const message = formatSyslogMessage(permittedRecord(), 'héllo ☃', header);
    const framed = frameOctetCounted(message);
    const space = framed.indexOf(0x20);
    const length = Number(framed.subarray(0, space).toString('ascii'));
    assert.equal(length, Buffer.byteLength(message, 'utf8'));
    assert.notEqual(length, message.length);
    assert.equal(framed.subarray(space + 1).toString('utf8'), message);
  });

  it('frames with a trailing LF for non-transparent framing, escaping any LF inside', () => {
    assert.equal(frameLineFeed('a\nb').toString(), 'a#012b\n');
  });

  it('carries a CEF body unchanged after the structured data', () => {
    const record = rejectedRecord();
    const cef = formatCef(record);
    assert.ok(formatSyslogMessage(record, cef, header).endsWith(`] ${cef}`));
  });
});
