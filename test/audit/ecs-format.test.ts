import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { commonNames, formatEcs, toEcs } from '../../src/audit/formats/ecs-format.ts';
import { closedRecord, identityRejectedRecord, permittedRecord, rejectedRecord } from './helpers/sample-records.ts';

// biome-ignore lint/suspicious/noExplicitAny: assertions walk a JSON document
type Doc = Record<string, any>;

describe('ECS format', () => {
  it('puts the SPIFFE ID in source.user.id, related.user and the certificate alternative names', () => {
    const doc = toEcs(permittedRecord()) as Doc;
    assert.equal(doc.source.user.id, 'spiffe://prod.example.org/ns/payments/sa/checkout');
    assert.equal(doc.source.user.name, 'checkout');
    assert.equal(doc.source.user.domain, 'prod.example.org');
    assert.deepEqual(doc.related.user, ['spiffe://prod.example.org/ns/payments/sa/checkout']);
    assert.deepEqual(doc.tls.client.x509.alternative_names, ['spiffe://prod.example.org/ns/payments/sa/checkout']);
    assert.equal(doc.orchestrator.namespace, 'payments');
  });

  it('describes the TLS session and the client certificate as ECS tls.* fields', () => {
    const doc = toEcs(permittedRecord()) as Doc;
    assert.equal(doc.tls.version, '1.3', 'ECS wants the number only');
    assert.equal(doc.tls.version_protocol, 'tls');
    assert.equal(doc.tls.cipher, 'TLS_AES_256_GCM_SHA384');
    assert.equal(doc.tls.established, true);
    assert.equal(doc.tls.client.server_name, 'egress.example');
    assert.equal(doc.tls.client.hash.sha256, 'C098A11D5479B5F2C7DFC3A7D01931AC9C5C9527AB9DFF3860FC5AA303764262');
    assert.equal(doc.tls.client.x509.serial_number, '6A5B073E506A2728ED2E8DC56387C1D5375AC50F');
    assert.equal(doc.tls.client.x509.issuer.distinguished_name, 'O=SPIRE, CN=prod.example.org intermediate');
    assert.deepEqual(doc.tls.client.x509.issuer.common_name, ['prod.example.org intermediate']);
    assert.equal(doc.tls.client.x509.not_after, '2026-05-01T13:00:00.000Z');
    assert.equal(doc.tls.client.x509.not_before, '2026-05-01T11:00:00.000Z');
    assert.equal(
      doc.tls.client.x509.subject,
      undefined,
      'an empty subject (Istio SVID) is left out, not written as ""',
    );
    assert.deepEqual(doc.related.hash, [doc.tls.client.hash.sha256]);
  });

  it('categorises a permitted connection as allowed/start and a close as allowed/end with duration and bytes', () => {
    const permitted = toEcs(permittedRecord()) as Doc;
    assert.deepEqual(permitted.event.category, ['network']);
    assert.deepEqual(permitted.event.type, ['connection', 'allowed', 'start']);
    assert.equal(permitted.event.outcome, 'success');
    assert.equal(permitted.source.nat.ip, '203.0.113.10');
    assert.equal(permitted.rule.name, 'payments-to-stripe');
    const closed = toEcs(closedRecord()) as Doc;
    assert.deepEqual(closed.event.type, ['connection', 'allowed', 'end']);
    assert.equal(closed.event.duration, 5_250_000_000);
    assert.equal(closed.source.bytes, 18_234, 'source.bytes = client → destination');
    assert.equal(closed.destination.bytes, 402_211, 'destination.bytes = destination → client');
    assert.equal(closed.network.bytes, 18_234 + 402_211);
  });

  it('records a policy refusal as type denied with outcome success, the reason and the error code', () => {
    const doc = toEcs(rejectedRecord()) as Doc;
    assert.deepEqual(doc.event.type, ['connection', 'denied']);
    assert.equal(doc.event.outcome, 'success', 'the gateway did what it decided');
    assert.equal(doc.event.reason, 'no rule matched (default deny)');
    assert.equal(doc.error.code, 'EGW_POLICY_DENIED');
    assert.equal(doc.source.user.id, 'spiffe://prod.example.org/ns/dev/sa/batch');
    assert.equal(doc.source.nat, undefined);
  });

  it('marks an upstream failure as outcome failure', () => {
    const doc = toEcs(rejectedRecord({ code: 'EGW_UPSTREAM_REFUSED', reason: 'connection refused' })) as Doc;
    assert.equal(doc.event.outcome, 'failure');
  });

  it('leaves tls.established false for a client refused before any TLS session existed', () => {
    const doc = toEcs(identityRejectedRecord()) as Doc;
    assert.equal(doc.tls.established, false);
    assert.equal(doc.source.user, undefined);
    assert.equal(doc.error.code, 'EGW_IDENTITY_NO_CERT');
  });

  it('writes a destination given as an IP only to destination.ip/address, never to destination.domain', () => {
    const doc = toEcs(
      permittedRecord({ destination: { domain: '198.51.100.7', ip: '198.51.100.7', port: 443 } }),
    ) as Doc;
    assert.equal(doc.destination.domain, undefined);
    assert.equal(doc.destination.address, '198.51.100.7');
    assert.equal(doc.related.hosts, undefined);
  });

  it('says network.protocol http only for forwarded http:// requests, not for CONNECT tunnels', () => {
    assert.equal((toEcs(permittedRecord()) as Doc).network.protocol, undefined);
    const forwarded = toEcs(
      permittedRecord({ http: { method: 'GET', url: 'http://api.example.com/x', statusCode: 200 } }),
    ) as Doc;
    assert.equal(forwarded.network.protocol, 'http');
    assert.equal(forwarded.url.full, 'http://api.example.com/x');
    assert.equal(forwarded.http.response.status_code, 200);
  });

  it('carries event.id, unique per record, for de-duplication', () => {
    const a = toEcs(permittedRecord()) as Doc;
    const b = toEcs(permittedRecord()) as Doc;
    assert.match(a.event.id, /^[0-9a-f-]{36}$/);
    assert.notEqual(a.event.id, b.event.id);
  });

  it('produces one line of JSON even when a reason contains line breaks and quotes', () => {
    const line = formatEcs(rejectedRecord({ reason: 'bad "request"\r\nInjected: yes' }));
    assert.equal(line.includes('\n'), false);
    assert.equal(JSON.parse(line).event.reason, 'bad "request"\r\nInjected: yes');
  });

  it('writes exactly JSON.stringify(toEcs(record)), also when a record reuses cached tls and observer members', () => {
    const permitted = permittedRecord();
    // The close record shares the certificate and session objects, as one connection's records do.
    const closed = closedRecord({ certificate: permitted.certificate, tls: permitted.tls });
    const otherSni = permittedRecord({
      certificate: permitted.certificate,
      tls: { ...permitted.tls, serverName: 'b' },
    });
    const records = [permitted, closed, otherSni, rejectedRecord(), identityRejectedRecord(), permitted];
    for (const record of records) assert.equal(formatEcs(record), JSON.stringify(toEcs(record)));
    assert.equal(JSON.parse(formatEcs(otherSni)).tls.client.server_name, 'b', 'the session facts are part of the key');
  });

  it('extracts CN values from an RFC 4514 DN, keeping escaped commas inside the value', () => {
    assert.deepEqual(commonNames('O=SPIRE, CN=prod intermediate'), ['prod intermediate']);
    assert.deepEqual(commonNames('CN=Doe\\, John, O=Example'), ['Doe, John']);
    assert.deepEqual(commonNames(''), []);
  });
});
