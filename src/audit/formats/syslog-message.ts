import type { AuditRecord } from '../../core/audit-event.ts';
import { recordSeverity } from './record-severity.ts';

/** RFC 5424 §6.2.1 facility numbers by their usual names. */
export const FACILITIES = {
  kern: 0,
  user: 1,
  mail: 2,
  daemon: 3,
  auth: 4,
  syslog: 5,
  lpr: 6,
  news: 7,
  uucp: 8,
  cron: 9,
  authpriv: 10,
  ftp: 11,
  ntp: 12,
  security: 13,
  console: 14,
  clock: 15,
  local0: 16,
  local1: 17,
  local2: 18,
  local3: 19,
  local4: 20,
  local5: 21,
  local6: 22,
  local7: 23,
} as const;
export type FacilityName = keyof typeof FACILITIES;

export interface SyslogHeader {
  readonly facility: number;
  readonly hostname: string;
  readonly appName: string;
  readonly procId: string;
  /** SD-ID of the one structured-data element, e.g. `egw@32473` (32473 is the documentation PEN, RFC 5612). */
  readonly sdId: string;
  /** Prefix MSG with the UTF-8 BOM (RFC 5424 MSG-UTF8). Off by default: CEF and JSON parsers expect the first byte to be theirs. */
  readonly bom: boolean;
}

/** HOSTNAME, APP-NAME, PROCID and MSGID are PRINTUSASCII (33–126) with a length cap; empty is NILVALUE. */
export function headerField(value: string, max: number): string {
  const clean = value.replace(/[^\x21-\x7e]/g, '').slice(0, max);
  return clean === '' ? '-' : clean;
}

/** PARAM-VALUE: only `"`, `\` and `]` are escaped (RFC 5424 §6.3.3). */
export function escapeSdValue(value: string): string {
  return value.replace(/["\\\]]/g, (c) => `\\${c}`);
}

/** SD-ID and PARAM-NAME: printable ASCII except `=`, SP, `]`, `"`; at most 32 characters. */
export function isSdName(name: string): boolean {
  return /^[\x21-\x7e]{1,32}$/.test(name) && !/[= \]"]/.test(name);
}

/**
 * The facts a syslog receiver can index without parsing MSG (rsyslog: `%structured-data%`,
 * mmpstrucdata). Parameter names follow CEF's (src/spt/dst/dpt) so one mapping serves both.
 */
function structuredData(record: AuditRecord, sdId: string): string {
  const params: Array<[string, string | number | undefined]> = [
    ['id', record.id],
    ['conn', record.connectionId],
    ['action', record.action],
    ['spiffe', record.identity?.spiffeId],
    ['src', record.source.ip],
    ['spt', record.source.port],
    ['dst', record.destination?.domain ?? record.destination?.ip],
    ['dpt', record.destination?.port],
    ['rule', record.rule?.name],
    ['code', record.code],
  ];
  const body = params
    .filter((p): p is [string, string | number] => p[1] !== undefined && p[1] !== '')
    .map(([name, value]) => `${name}="${escapeSdValue(String(value))}"`)
    .join(' ');
  return `[${sdId} ${body}]`;
}

/**
 * One RFC 5424 message: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] MSG`. MSGID is the
 * record's action; MSG is the record in the sink's format (ECS, CEF or text).
 */
export function formatSyslogMessage(record: AuditRecord, body: string, header: SyslogHeader): string {
  const pri = header.facility * 8 + recordSeverity(record).syslog;
  const timestamp = new Date(record.timestamp).toISOString(); // RFC 3339, upper-case T and Z, 3 fraction digits
  return [
    `<${pri}>1`,
    timestamp,
    headerField(header.hostname, 255),
    headerField(header.appName, 48),
    headerField(header.procId, 128),
    headerField(record.action, 32),
    `${structuredData(record, header.sdId)} ${header.bom ? '\ufeff' : ''}${body}`,
  ].join(' ');
}

/** RFC 6587 §3.4.1 octet counting (also RFC 5425 for TLS): `MSG-LEN SP SYSLOG-MSG`, length in bytes. */
export function frameOctetCounted(message: string): Buffer {
  const bytes = Buffer.from(message, 'utf8');
  return Buffer.concat([Buffer.from(`${bytes.length} `, 'ascii'), bytes]);
}

/** RFC 6587 §3.4.2 non-transparent framing: the message then LF. A LF inside would split it, so it is escaped as rsyslog does. */
export function frameLineFeed(message: string): Buffer {
  return Buffer.from(`${message.replace(/\n/g, '#012')}\n`, 'utf8');
}
