import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { formatEcs, toEcs } from '../../src/audit/formats/ecs-format.ts';
import type { AuditAction, AuditRecord } from '../../src/core/audit-event.ts';
import { fuzzOptions, tokenString } from './fuzz-options.ts';

/**
 * formatEcs splices cached tls/observer texts between compacted runs of members; toEcs builds the
 * whole document as objects and compacts it. They must agree byte for byte on every record,
 * including the ones that leave members out (empty strings, zero status codes, nested objects
 * left empty) and strings that need escaping.
 */
const text = tokenString(['a', 'Z', '0', '.', ':', '"', '\\', '\n', '\r', '\u0000', '\u2028', 'é', '😀', ',', ' ', '']);
const maybe = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { nil: undefined });
const ip = fc.constantFrom('127.0.0.1', '10.0.0.8', '::1', 'fd00::5', '');
const port = fc.oneof(fc.integer({ min: 0, max: 65_535 }), fc.constant(Number.NaN));
const actions: AuditAction[] = [
  'egress-permitted',
  'egress-would-deny',
  'egress-rejected',
  'egress-closed',
  'identity-rejected',
  'handshake-refused-aggregate',
];

const certificate = fc.record({
  serialNumber: text,
  issuer: fc.oneof(fc.constant(''), fc.constant('O=SPIRE, CN=prod intermediate'), text),
  subject: fc.oneof(fc.constant(''), fc.constant('CN=Doe\\, John, O=Example'), text),
  sha256: text,
  notBefore: text,
  notAfter: text,
  alternativeNames: fc.array(text, { maxLength: 2 }),
});

const record: fc.Arbitrary<AuditRecord> = fc.record(
  {
    id: text,
    connectionId: text,
    action: fc.constantFrom(...actions),
    timestamp: text,
    reason: text,
    code: maybe(fc.constantFrom('EGW_POLICY_DENIED', 'EGW_UPSTREAM_REFUSED', 'EGW_INTERNAL')),
    listener: text,
    mode: fc.constantFrom('connect', 'tcp'),
    source: fc.record({ ip, port }),
    identity: maybe(
      fc.record(
        { spiffeId: text, trustDomain: text, namespace: maybe(text), serviceAccount: maybe(text) },
        { requiredKeys: ['spiffeId', 'trustDomain'] },
      ),
    ),
    certificate: maybe(certificate),
    tls: maybe(
      fc.record({
        version: maybe(fc.constantFrom('TLSv1.3', 'TLSv1.2', 'SSLv3')),
        cipher: maybe(text),
        serverName: maybe(text),
      }),
    ),
    destination: maybe(
      fc.record({
        domain: maybe(fc.oneof(text, fc.constant('api.example.com'), ip)),
        ip: maybe(ip),
        port: maybe(port),
      }),
    ),
    snat: maybe(fc.record({ ip, port: maybe(port) }, { requiredKeys: ['ip'] })),
    rule: maybe(fc.record({ name: text })),
    parent: maybe(fc.record({ address: text, ip: maybe(ip), port }, { requiredKeys: ['address', 'port'] })),
    http: maybe(
      fc.record(
        {
          method: fc.constantFrom('CONNECT', 'GET', ''),
          url: maybe(text),
          statusCode: maybe(fc.constantFrom(0, 200, 403)),
        },
        { requiredKeys: ['method'] },
      ),
    ),
    start: maybe(text),
    end: maybe(text),
    durationNs: maybe(fc.nat()),
    bytesFromClient: maybe(fc.nat()),
    bytesToClient: maybe(fc.nat()),
    refusals: maybe(
      fc.record({
        total: fc.nat(),
        byReason: fc.record(
          { first_byte_timeout: fc.nat(), source_limit: fc.nat(), proxy_header: fc.nat() },
          { requiredKeys: [] },
        ),
      }),
    ),
  },
  { requiredKeys: ['id', 'connectionId', 'action', 'timestamp', 'reason', 'listener', 'mode', 'source'] },
) as fc.Arbitrary<AuditRecord>;

describe('ECS format (fuzz)', () => {
  it('writes exactly JSON.stringify(toEcs(record)) for every record', () => {
    // Positive control: the generator does make records with a certificate, an HTTP request and
    // refusals, and the line written for one carries the certificate's member.
    const full = fc.sample(record, { seed: 7, numRuns: 200 }).find((r) => r.certificate && r.http && r.refusals);
    assert.ok(full, 'the generator makes records with certificate, http and refusals');
    assert.ok(JSON.parse(formatEcs(full)).tls.client.hash.sha256 !== undefined);
    fc.assert(
      fc.property(record, (r) => {
        assert.equal(formatEcs(r), JSON.stringify(toEcs(r)));
        // Twice: the second call takes the cached tls and observer texts.
        assert.equal(formatEcs(r), JSON.stringify(toEcs(r)));
      }),
      fuzzOptions(3000),
    );
  });
});
