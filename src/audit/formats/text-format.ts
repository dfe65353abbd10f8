import type { AuditRecord } from '../../core/audit-event.ts';

const WORD: Record<AuditRecord['action'], string> = {
  'egress-permitted': 'PERMITTED',
  'egress-rejected': 'REJECTED',
  'egress-closed': 'CLOSED',
  'identity-rejected': 'IDENTITY-REJECTED',
};

/** One human-readable line, e.g. `PERMITTED spiffe://… -> host:port rule=… snat=…`. */
export function formatText(record: AuditRecord): string {
  const who = record.identity?.spiffeId ?? `${record.source.ip}:${record.source.port}`;
  const dest = record.destination ? ` -> ${record.destination.domain ?? record.destination.ip}:${record.destination.port ?? ''}` : '';
  const parts = [`${record.timestamp} ${WORD[record.action]} ${who}${dest}`, `listener=${record.listener}`];
  if (record.rule) parts.push(`rule=${record.rule.name}`);
  if (record.snat?.ip) parts.push(`snat=${record.snat.ip}`);
  if (record.code) parts.push(`code=${record.code}`);
  if (record.bytesFromClient !== undefined) parts.push(`bytes_out=${record.bytesFromClient} bytes_in=${record.bytesToClient ?? 0}`);
  parts.push(`reason=${JSON.stringify(record.reason)}`);
  return parts.join(' ');
}
