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
    const value = compactValue(object[key]);
    if (value === undefined) continue;
    out ??= {};
    out[key] = value;
  }
  return out;
}

/** One member's value as compact() keeps it; undefined: the member is left out. */
function compactValue(value: unknown): unknown {
  if (value === undefined || (Array.isArray(value) && value.length === 0)) return undefined;
  if (value !== null && typeof value === 'object' && !Array.isArray(value))
    return compact(value as Record<string, unknown>);
  return value;
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

/** A member already serialised (`"key":value`), or nothing when compact() would leave it out. */
class Serialised {
  constructor(readonly json: string | undefined) {}
}

type Fixed = (name: 'tls' | 'observer') => unknown;

function serialise(key: string, value: unknown): Serialised {
  const kept = compactValue(value);
  return new Serialised(kept === undefined ? undefined : `${JSON.stringify(key)}:${JSON.stringify(kept)}`);
}

/**
 * The document's top-level members, in order. `tls` and `observer` come from `fixed`: every
 * record of a connection (and every connection of one SVID) carries the same certificate and
 * session facts, so formatEcs serialises those once; toEcs builds them each time.
 */
function members(record: AuditRecord, fixed: Fixed): ReadonlyArray<readonly [string, unknown]> {
  const destinationDomain =
    record.destination?.domain && isIP(record.destination.domain) === 0 ? record.destination.domain : undefined;
  const http = record.http;
  return [
    ['@timestamp', record.timestamp],
    ['ecs', { version: ECS_VERSION }],
    ['message', message(record)],
    ['event', ecsEvent(record)],
    ['error', record.code ? { code: record.code } : undefined],
    ['source', ecsSource(record)],
    ['destination', ecsDestination(record, destinationDomain)],
    ['network', ecsNetwork(record)],
    [
      'http',
      http && {
        request: { method: http.method },
        response: http.statusCode ? { status_code: http.statusCode } : undefined,
      },
    ],
    ['url', http?.url && http.method !== 'CONNECT' ? { full: http.url } : undefined],
    ['tls', fixed('tls')],
    [
      'orchestrator',
      record.identity?.namespace ? { type: 'kubernetes', namespace: record.identity.namespace } : undefined,
    ],
    ['rule', record.rule && { name: record.rule.name }],
    ['observer', fixed('observer')],
    ['labels', { listener: record.listener, mode: record.mode, connection_id: record.connectionId }],
    [
      'egress_gateway',
      {
        prehandshake: record.refusals && { refused: record.refusals.total, ...record.refusals.byReason },
        parent: record.parent && { address: record.parent.address, ip: record.parent.ip, port: record.parent.port },
      },
    ],
    ['related', ecsRelated(record, destinationDomain)],
  ];
}

const observerOf = (listener: string) => ({ ...OBSERVER, ingress: { zone: listener } });

/**
 * Elastic Common Schema document for one record. Allow/deny is `event.type` (allowed/denied);
 * `event.outcome` says whether the gateway did what it decided (success), or an upstream or
 * handshake failure stopped it (failure). Every field is listed in docs/audit.md.
 */
export function toEcs(record: AuditRecord): Record<string, unknown> {
  const fixed: Fixed = (name) => (name === 'tls' ? tlsOf(record) : observerOf(record.listener));
  return compact(Object.fromEntries(members(record, fixed))) as Record<string, unknown>;
}

const CACHED_PER_KEY = 64;
/** `tls` members by certificate object, then session facts: with a certificate, tlsOf reads nothing else. */
const tlsMembers = new WeakMap<object, Map<string, Serialised>>();
const observerMembers = new Map<string, Serialised>();

function cached<K>(cache: Map<K, Serialised>, key: K, build: () => Serialised): Serialised {
  let member = cache.get(key);
  if (!member) {
    member = build();
    if (cache.size < CACHED_PER_KEY) cache.set(key, member);
  }
  return member;
}

function cachedTls(record: AuditRecord): Serialised {
  const cert = record.certificate;
  if (!cert) return serialise('tls', tlsOf(record));
  let bySession = tlsMembers.get(cert);
  if (!bySession) {
    bySession = new Map();
    tlsMembers.set(cert, bySession);
  }
  const key = `${record.tls?.version}\n${record.tls?.cipher}\n${record.tls?.serverName}`;
  return cached(bySession, key, () => serialise('tls', tlsOf(record)));
}

/**
 * One JSON document on one line (JSON.stringify escapes every control character): the same text
 * as `JSON.stringify(toEcs(record))`. The cached members are spliced in as text; the members
 * between them are compacted into one object and serialised with one JSON.stringify call per run,
 * not one per member.
 */
export function formatEcs(record: AuditRecord): string {
  const fixed: Fixed = (name) =>
    name === 'tls'
      ? cachedTls(record)
      : cached(observerMembers, record.listener, () => serialise('observer', observerOf(record.listener)));
  const parts: string[] = [];
  let run: Record<string, unknown> | undefined;
  for (const [key, value] of members(record, fixed)) {
    if (value instanceof Serialised) {
      if (run) parts.push(JSON.stringify(run).slice(1, -1));
      run = undefined;
      if (value.json !== undefined) parts.push(value.json);
      continue;
    }
    const kept = compactValue(value);
    if (kept === undefined) continue;
    run ??= {};
    run[key] = kept;
  }
  if (run) parts.push(JSON.stringify(run).slice(1, -1));
  return `{${parts.join(',')}}`;
}
