import { randomUUID } from 'node:crypto';
import type { AuditRecord } from '../../../src/core/audit-event.ts';

/** A permitted CONNECT as the data path publishes it: identity, client certificate, TLS session, SNAT. */
export function permittedRecord(overrides: Partial<AuditRecord> = {}): AuditRecord {
  return {
    id: randomUUID(),
    connectionId: 'c0ffee00-0000-4000-8000-000000000001',
    action: 'egress-permitted',
    timestamp: '2026-05-01T12:00:05.250Z',
    reason: 'rule payments-to-stripe',
    listener: 'egress',
    mode: 'connect',
    source: { ip: '10.42.3.17', port: 51234 },
    identity: {
      spiffeId: 'spiffe://prod.example.org/ns/payments/sa/checkout',
      trustDomain: 'prod.example.org',
      namespace: 'payments',
      serviceAccount: 'checkout',
    },
    certificate: {
      serialNumber: '6A5B073E506A2728ED2E8DC56387C1D5375AC50F',
      issuer: 'O=SPIRE, CN=prod.example.org intermediate',
      subject: '',
      sha256: 'C098A11D5479B5F2C7DFC3A7D01931AC9C5C9527AB9DFF3860FC5AA303764262',
      notBefore: '2026-05-01T11:00:00.000Z',
      notAfter: '2026-05-01T13:00:00.000Z',
      alternativeNames: ['spiffe://prod.example.org/ns/payments/sa/checkout'],
    },
    tls: { version: 'TLSv1.3', cipher: 'TLS_AES_256_GCM_SHA384', serverName: 'egress.example' },
    destination: { domain: 'api.stripe.com', ip: '198.51.100.7', port: 443 },
    snat: { ip: '203.0.113.10', port: 40001 },
    rule: { name: 'payments-to-stripe' },
    http: { method: 'CONNECT', url: 'api.stripe.com:443' },
    ...overrides,
  };
}

/** Report mode: let through, with the rule and reason that would have refused it. */
export function wouldDenyRecord(overrides: Partial<AuditRecord> = {}): AuditRecord {
  return permittedRecord({
    action: 'egress-would-deny',
    reason: 'denied by rule stage-no-pastebin',
    rule: { name: 'stage-no-pastebin' },
    destination: { domain: 'pastebin.com', ip: '198.51.100.9', port: 443 },
    http: { method: 'CONNECT', url: 'pastebin.com:443' },
    ...overrides,
  });
}

/** A policy refusal: no SNAT, no bytes, a stable error code. */
export function rejectedRecord(overrides: Partial<AuditRecord> = {}): AuditRecord {
  const { snat: _snat, ...base } = permittedRecord();
  return {
    ...base,
    id: randomUUID(),
    action: 'egress-rejected',
    timestamp: '2026-05-01T12:01:00.004Z',
    reason: 'no rule matched (default deny)',
    code: 'EGW_POLICY_DENIED',
    identity: {
      spiffeId: 'spiffe://prod.example.org/ns/dev/sa/batch',
      trustDomain: 'prod.example.org',
      namespace: 'dev',
      serviceAccount: 'batch',
    },
    destination: { domain: 'pastebin.com', port: 443 },
    rule: undefined,
    http: { method: 'CONNECT', url: 'pastebin.com:443', statusCode: 403 },
    ...overrides,
  } as AuditRecord;
}

/** The end of a permitted tunnel: duration and byte counts. */
export function closedRecord(overrides: Partial<AuditRecord> = {}): AuditRecord {
  return permittedRecord({
    id: randomUUID(),
    action: 'egress-closed',
    reason: 'closed',
    http: undefined,
    start: '2026-05-01T12:00:00.000Z',
    end: '2026-05-01T12:00:05.250Z',
    durationNs: 5_250_000_000,
    bytesFromClient: 18_234,
    bytesToClient: 402_211,
    ...overrides,
  });
}

/** A client without a valid certificate, refused at the handshake. */
export function identityRejectedRecord(overrides: Partial<AuditRecord> = {}): AuditRecord {
  return {
    id: randomUUID(),
    connectionId: 'c0ffee00-0000-4000-8000-000000000002',
    action: 'identity-rejected',
    timestamp: '2026-05-01T12:02:00.000Z',
    reason: 'the client presented no certificate',
    code: 'EGW_IDENTITY_NO_CERT',
    listener: 'egress',
    mode: 'connect',
    source: { ip: '10.42.7.9', port: 40222 },
    ...overrides,
  };
}

/** Sockets from one source refused before their TLS handshake, reported once per interval. */
export function handshakeRefusedAggregateRecord(overrides: Partial<AuditRecord> = {}): AuditRecord {
  return {
    id: randomUUID(),
    connectionId: 'c0ffee00-0000-4000-8000-000000000003',
    action: 'handshake-refused-aggregate',
    timestamp: '2026-05-01T12:03:10.000Z',
    reason:
      '1000 sockets from 10.42.7.66 refused or closed before the TLS handshake in 10 s: source_limit=936 first_byte_timeout=63 listener_limit=1',
    code: 'EGW_PREHANDSHAKE_REFUSED',
    listener: 'egress',
    mode: 'connect',
    source: { ip: '10.42.7.66', port: 0 },
    start: '2026-05-01T12:03:00.000Z',
    end: '2026-05-01T12:03:10.000Z',
    refusals: { total: 1000, byReason: { source_limit: 936, first_byte_timeout: 63, listener_limit: 1 } },
    ...overrides,
  };
}
