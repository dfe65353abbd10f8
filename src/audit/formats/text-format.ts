import type { AuditRecord } from '../../core/audit-event.ts';

const WORD: Record<AuditRecord['action'], string> = {
  'egress-permitted': 'PERMITTED',
  'egress-would-deny': 'WOULD-DENY',
  'egress-rejected': 'REJECTED',
  'egress-closed': 'CLOSED',
  'identity-rejected': 'IDENTITY-REJECTED',
  'handshake-refused-aggregate': 'HANDSHAKE-REFUSED-AGGREGATE',
};

/**
 * A bare word when it is safe, otherwise a JSON string. Destination names come from clients,
 * so anything with spaces, quotes or control characters is quoted: one record stays one line
 * and cannot forge a `key=value` of its own.
 */
function token(value: string): string {
  return /^[\x21-\x7e]+$/.test(value) && !/["\\]/.test(value) ? value : JSON.stringify(value);
}

/** One human-readable line, e.g. `… PERMITTED spiffe://… -> host:port listener=… rule=… snat=… id=…`. */
export function formatText(record: AuditRecord): string {
  const who = record.identity?.spiffeId ?? `${record.source.ip}:${record.source.port}`;
  const dest = record.destination
    ? ` -> ${token(`${record.destination.domain ?? record.destination.ip ?? ''}:${record.destination.port ?? ''}`)}`
    : '';
  const parts = [
    `${record.timestamp} ${WORD[record.action]} ${token(who)}${dest}`,
    `listener=${token(record.listener)}`,
  ];
  if (record.rule) parts.push(`rule=${token(record.rule.name)}`);
  if (record.snat?.ip) parts.push(`snat=${token(record.snat.ip)}`);
  if (record.parent) parts.push(`via=${token(`${record.parent.address}:${record.parent.port}`)}`);
  if (record.code) parts.push(`code=${record.code}`);
  if (record.refusals) parts.push(`count=${record.refusals.total}`);
  if (record.bytesFromClient !== undefined)
    parts.push(`bytes_out=${record.bytesFromClient} bytes_in=${record.bytesToClient ?? 0}`);
  if (record.durationNs !== undefined) parts.push(`duration_ms=${Math.round(record.durationNs / 1e6)}`);
  parts.push(`reason=${JSON.stringify(record.reason)}`, `id=${record.id}`);
  return parts.join(' ');
}
