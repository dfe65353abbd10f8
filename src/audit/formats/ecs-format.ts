import { isIP } from 'node:net';
import type { AuditRecord } from '../../core/audit-event.ts';
import { ECS_VERSION, OBSERVER } from '../observer.ts';
import { recordFailed } from './record-severity.ts';

const EVENT_TYPE: Record<AuditRecord['action'], string[]> = {
  'egress-permitted': ['connection', 'allowed', 'start'],
  // Report mode: the connection starts (allowed) although policy would deny it; event.reason and rule.name say why.
  'egress-would-deny': ['connection', 'allowed', 'start'],
  'egress-closed': ['connection', 'allowed', 'end'],
  'egress-rejected': ['connection', 'denied'],
  'identity-rejected': ['connection', 'denied'],
  'handshake-refused-aggregate': ['connection', 'denied'],
};

/** `TLSv1.3` → { version: '1.3', version_protocol: 'tls' }, as ECS wants. */
function tlsVersion(version: string | undefined): { version?: string; version_protocol?: string } {
  const match = /^TLSv(\d(?:\.\d)?)$/.exec(version ?? '');
  return match ? { version: match[1] as string, version_protocol: 'tls' } : {};
}

/**
 * The CN values of an RFC 4514-style DN (`O=SPIRE, CN=prod intermediate`), for ECS's
 * `*.common_name` arrays. Escaped commas (`\,`) stay inside their value.
 */
export function commonNames(dn: string): string[] {
  const names: string[] = [];
  for (const rdn of dn.split(/(?<!\\),\s*/)) {
    const match = /^CN=(.*)$/i.exec(rdn.trim());
    if (match?.[1]) names.push(match[1].replace(/\\(.)/g, '$1'));
  }
  return names;
}

/**
 * Copies without undefined values, empty arrays and objects left empty, so documents carry only
 * known facts. Builds new objects rather than deleting keys: `delete` turns V8 objects into slow
 * dictionaries, and this runs on the data path for every record.
 */
function compact(object: Record<string, unknown>): Record<string, unknown> | undefined {
  let out: Record<string, unknown> | undefined;
  for (const key in object) {
    let value = object[key];
    if (value === undefined || (Array.isArray(value) && value.length === 0)) continue;
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
      value = compact(value as Record<string, unknown>);
      if (value === undefined) continue;
    }
    out ??= {};
    out[key] = value;
  }
  return out;
}

function message(record: AuditRecord): string {
  const who = record.identity?.spiffeId ?? `${record.source.ip}:${record.source.port}`;
  const where = record.destination
    ? ` -> ${record.destination.domain ?? record.destination.ip}:${record.destination.port}`
    : '';
  return `${record.action} ${who}${where}: ${record.reason}`;
}

function x509Of(cert: NonNullable<AuditRecord['certificate']>): Record<string, unknown> {
  return {
    serial_number: cert.serialNumber,
    issuer: { distinguished_name: cert.issuer || undefined, common_name: commonNames(cert.issuer) },
    subject: { distinguished_name: cert.subject || undefined, common_name: commonNames(cert.subject) },
    alternative_names: [...cert.alternativeNames],
    not_before: cert.notBefore,
    not_after: cert.notAfter,
  };
}

function tlsOf(record: AuditRecord): Record<string, unknown> | undefined {
  const cert = record.certificate;
  const version = tlsVersion(record.tls?.version);
  // A handshake that failed (or never finished) leaves no negotiated version behind.
  const established = version.version !== undefined || cert !== undefined;
  if (!record.tls && !cert) return record.action === 'identity-rejected' ? { established: false } : undefined;
  return {
    ...version,
    cipher: record.tls?.cipher,
    established,
    client: {
      server_name: record.tls?.serverName,
      hash: cert ? { sha256: cert.sha256 } : undefined,
      x509: cert ? x509Of(cert) : undefined,
    },
  };
}

function ecsEvent(record: AuditRecord): Record<string, unknown> {
  return {
    kind: 'event',
    category: ['network'],
    type: EVENT_TYPE[record.action],
    action: record.action,
    outcome: recordFailed(record) ? 'failure' : 'success',
    reason: record.reason,
    id: record.id,
    start: record.start,
    end: record.end,
    duration: record.durationNs,
    dataset: 'egress_gateway.audit',
    module: 'egress_gateway',
  };
}

function ecsSource(record: AuditRecord): Record<string, unknown> {
  return {
    ip: record.source.ip,
    port: record.source.port,
    address: record.source.ip,
    bytes: record.bytesFromClient,
    nat: record.snat ? { ip: record.snat.ip || undefined, port: record.snat.port } : undefined,
    user: record.identity
      ? { id: record.identity.spiffeId, name: record.identity.serviceAccount, domain: record.identity.trustDomain }
      : undefined,
  };
}

function ecsDestination(
  record: AuditRecord,
  destinationDomain: string | undefined,
): Record<string, unknown> | undefined {
  return record.destination
    ? {
        domain: destinationDomain,
        address: record.destination.domain ?? record.destination.ip,
        ip: record.destination.ip,
        port: record.destination.port,
        bytes: record.bytesToClient,
      }
    : undefined;
}

function ecsNetwork(record: AuditRecord): Record<string, unknown> {
  return {
    transport: 'tcp',
    iana_number: '6',
    type: isIP(record.source.ip) === 6 ? 'ipv6' : 'ipv4',
    direction: 'egress',
    // A CONNECT tunnel carries an unknown protocol; only forwarded http:// requests are known to be HTTP.
    protocol: record.http && record.http.method !== 'CONNECT' ? 'http' : undefined,
    bytes:
      record.bytesFromClient !== undefined && record.bytesToClient !== undefined
        ? record.bytesFromClient + record.bytesToClient
        : undefined,
  };
}

function ecsRelated(record: AuditRecord, destinationDomain: string | undefined): Record<string, unknown> {
  return {
    ip: [
      ...new Set(
        [record.source.ip, record.destination?.ip, record.snat?.ip, record.parent?.ip].filter((v): v is string =>
          Boolean(v),
        ),
      ),
    ],
    user: record.identity ? [record.identity.spiffeId] : undefined,
    hosts: destinationDomain ? [destinationDomain] : undefined,
    hash: record.certificate ? [record.certificate.sha256] : undefined,
  };
}

/**
 * Elastic Common Schema document for one record. Allow/deny is `event.type` (allowed/denied);
 * `event.outcome` says whether the gateway did what it decided (success), or an upstream or
 * handshake failure stopped it (failure). Every field is listed in docs/audit.md.
 */
export function toEcs(record: AuditRecord): Record<string, unknown> {
  const destinationDomain =
    record.destination?.domain && isIP(record.destination.domain) === 0 ? record.destination.domain : undefined;
  return compact({
    '@timestamp': record.timestamp,
    ecs: { version: ECS_VERSION },
    message: message(record),
    event: ecsEvent(record),
    error: record.code ? { code: record.code } : undefined,
    source: ecsSource(record),
    destination: ecsDestination(record, destinationDomain),
    network: ecsNetwork(record),
    http: record.http
      ? {
          request: { method: record.http.method },
          response: record.http.statusCode ? { status_code: record.http.statusCode } : undefined,
        }
      : undefined,
    url: record.http?.url && record.http.method !== 'CONNECT' ? { full: record.http.url } : undefined,
    tls: tlsOf(record),
    orchestrator: record.identity?.namespace ? { type: 'kubernetes', namespace: record.identity.namespace } : undefined,
    rule: record.rule ? { name: record.rule.name } : undefined,
    observer: { ...OBSERVER, ingress: { zone: record.listener } },
    labels: { listener: record.listener, mode: record.mode, connection_id: record.connectionId },
    egress_gateway: {
      prehandshake: record.refusals ? { refused: record.refusals.total, ...record.refusals.byReason } : undefined,
      parent: record.parent
        ? { address: record.parent.address, ip: record.parent.ip, port: record.parent.port }
        : undefined,
    },
    related: ecsRelated(record, destinationDomain),
  }) as Record<string, unknown>;
}

/** One JSON document on one line (JSON.stringify escapes every control character). */
export function formatEcs(record: AuditRecord): string {
  return JSON.stringify(toEcs(record));
}
