import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatText } from '../../src/audit/formats/text-format.ts';
import { closedRecord, identityRejectedRecord, permittedRecord, rejectedRecord } from './helpers/sample-records.ts';

describe('text format', () => {
  it('reads as one human line: PERMITTED spiffe://… -> host:port rule=…', () => {
    const record = permittedRecord();
    const line = formatText(record);
    assert.equal(
      line,
      `2026-05-01T12:00:05.250Z PERMITTED spiffe://prod.example.org/ns/payments/sa/checkout -> api.stripe.com:443 listener=egress rule=payments-to-stripe snat=203.0.113.10 reason="rule payments-to-stripe" id=${record.id}`,
    );
  });

  it('shows a refusal with its code and reason', () => {
    const line = formatText(rejectedRecord());
    assert.match(line, / REJECTED spiffe:\/\/prod\.example\.org\/ns\/dev\/sa\/batch -> pastebin\.com:443 /);
    assert.match(line, / code=EGW_POLICY_DENIED reason="no rule matched \(default deny\)" /);
  });

  it('shows bytes and duration when a tunnel closes', () => {
    assert.match(formatText(closedRecord()), / CLOSED .* bytes_out=18234 bytes_in=402211 duration_ms=5250 /);
  });

  it('names the client by address when there is no identity', () => {
    assert.match(
      formatText(identityRejectedRecord()),
      / IDENTITY-REJECTED 10\.42\.7\.9:40222 listener=egress code=EGW_IDENTITY_NO_CERT /,
    );
  });

  it('quotes client-supplied names with spaces or line breaks, so one record stays one line', () => {
    const line = formatText(
      rejectedRecord({ destination: { domain: 'evil host\nPERMITTED x', port: 443 }, reason: 'a\nb' }),
    );
    assert.equal(line.includes('\n'), false);
    assert.match(line, / -> "evil host\\nPERMITTED x:443" /);
    assert.match(line, / reason="a\\nb" /);
  });
});
