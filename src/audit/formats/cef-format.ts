import type { AuditRecord } from '../../core/audit-event.ts';
import { OBSERVER } from '../observer.ts';
import { recordFailed, recordSeverity } from './record-severity.ts';

/**
 * ArcSight CEF:0. Header fields escape `\` and `|`; extension values escape `\`, `=`, CR and LF
 * (a `|` in the extension is left alone, as the spec says). Values are truncated to the
 * dictionary's maximum lengths *before* escaping, so an escape sequence is never cut in half.
 */
const NAME: Record<AuditRecord['action'], string> = {
  'egress-permitted': 'Egress connection permitted',
  'egress-would-deny': 'Egress connection let through in report mode (policy would deny)',
  'egress-closed': 'Egress connection closed',
  'egress-rejected': 'Egress connection rejected',
  'identity-rejected': 'Client identity rejected',
  'handshake-refused-aggregate': 'Sockets refused before the TLS handshake',
};

const ACT: Record<AuditRecord['action'], string> = {
  'egress-permitted': 'permit',
  'egress-would-deny': 'would-deny',
  'egress-closed': 'close',
  'egress-rejected': 'reject',
  'identity-rejected': 'reject',
  'handshake-refused-aggregate': 'reject',
};

/** Header field: `\` → `\\`, `|` → `\|`. The spec has no escape for line breaks there, so they become spaces. */
export function escapeCefHeader(value: string): string {
  return value.replace(/[\\|]/g, (c) => `\\${c}`).replace(/[\r\n]+/g, ' ');
}

/** Extension value: `\` → `\\`, `=` → `\=`, LF → `\n`, CR → `\r`. */
export function escapeCefValue(value: string): string {
  return value.replace(/[\\=\r\n]/g, (c) => (c === '\n' ? '\\n' : c === '\r' ? '\\r' : `\\${c}`));
}

/** Cuts to at most `max` UTF-16 units without splitting a surrogate pair (an emoji would become U+FFFD). */
function truncate(value: string, max: number): string {
  if (value.length <= max) return value;
  const last = value.charCodeAt(max - 1);
  return value.slice(0, last >= 0xd800 && last <= 0xdbff ? max - 1 : max);
}

function epochMs(iso: string | undefined): string | undefined {
  if (!iso) return undefined;
  const ms = Date.parse(iso);
  return Number.isNaN(ms) ? undefined : String(ms);
}

type Extension = Array<[key: string, value: string | number | undefined, max?: number]>;

/** Pairs a custom-string slot with its label; both are omitted when the value is unknown. */
function labelled(slot: string, label: string, value: string | number | undefined, max = 1023): Extension {
  return value === undefined || value === ''
    ? []
    : [
        [`${slot}Label`, label],
        [slot, value, max],
      ];
}

/** The pipe-separated header: vendor, product, version, signature, name, severity. */
function cefHeader(record: AuditRecord): string {
  const severity = recordSeverity(record).cef;
  return [
    'CEF:0',
    truncate(OBSERVER.vendor, 63),
    truncate(OBSERVER.product, 63),
    truncate(OBSERVER.version, 31),
    record.action,
    NAME[record.action],
    String(severity),
  ]
    .map((field, i) => (i === 0 ? field : escapeCefHeader(field)))
    .join('|');
}

/** Times, verdict and the connection's endpoints and bytes. */
function connectionFields(record: AuditRecord): Extension {
  const dest = record.destination;
  return [
    ['rt', epochMs(record.timestamp)],
    ['start', epochMs(record.start)],
    ['end', epochMs(record.end)],
    ['act', ACT[record.action], 63],
    ['outcome', recordFailed(record) ? 'failure' : 'success', 63],
    // baseEventCount: an aggregate record stands for this many refused sockets.
    ['cnt', record.refusals?.total],
    ['reason', record.reason, 1023],
    ['cat', record.code, 1023],
    ['src', record.source.ip],
    ['spt', record.source.port],
    ['sourceTranslatedAddress', record.snat?.ip || undefined],
    ['sourceTranslatedPort', record.snat?.port],
    ['dhost', dest?.domain, 1023],
    ['dst', dest?.ip],
    ['dpt', dest?.port],
    // A parent proxy (rules[].via): where the upstream connection actually went.
    ['destinationTranslatedAddress', record.parent?.ip],
    ['destinationTranslatedPort', record.parent?.port],
    ['proto', 'TCP', 31],
    ['app', record.http && record.http.method !== 'CONNECT' ? 'HTTP' : undefined, 31],
    ['requestMethod', record.http?.method, 1023],
    ['request', record.http?.url, 1023],
    // `in` is src→dst and `out` dst→src, as Elastic's decoder maps them (source.bytes / destination.bytes).
    ['in', record.bytesFromClient],
    ['out', record.bytesToClient],
  ];
}

/** The workload identity, rule, TLS and certificate, then the observer. */
function identityFields(record: AuditRecord): Extension {
  const cert = record.certificate;
  const tls = [record.tls?.version, record.tls?.cipher].filter(Boolean).join(' ');
  const durationMs = record.durationNs === undefined ? undefined : Math.round(record.durationNs / 1e6);
  return [
    ['suser', record.identity?.spiffeId, 1023],
    ...labelled('cs1', 'k8sNamespace', record.identity?.namespace),
    ...labelled('cs2', 'k8sServiceAccount', record.identity?.serviceAccount),
    ...labelled('cs3', 'ruleName', record.rule?.name),
    ...labelled('cs4', 'tlsVersionCipher', tls),
    ...labelled('cs5', 'clientCertIssuer', cert?.issuer),
    ...labelled('cs6', 'clientCertSha256', cert?.sha256),
    ...labelled('flexString1', 'clientCertSerial', cert?.serialNumber),
    ...labelled('flexString2', 'connectionId', record.connectionId),
    ...labelled('deviceCustomDate1', 'clientCertNotAfter', epochMs(cert?.notAfter)),
    ...labelled('cn1', 'durationMs', durationMs),
    ['deviceInboundInterface', record.listener, 128],
    ['dvchost', OBSERVER.hostname, 100],
    ['externalId', record.id, 40],
  ];
}

export function formatCef(record: AuditRecord): string {
  const extension: Extension = [...connectionFields(record), ...identityFields(record)];
  const pairs = extension
    .filter(
      (entry): entry is [string, string | number, number | undefined] => entry[1] !== undefined && entry[1] !== '',
    )
    .map(([key, value, max]) => `${key}=${escapeCefValue(truncate(String(value), max ?? 1023))}`);
  return `${cefHeader(record)}|${pairs.join(' ')}`;
}
