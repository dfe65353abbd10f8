import type { AuditRecord } from '../../core/audit-event.ts';
import { formatCef } from './cef-format.ts';
import { formatEcs } from './ecs-format.ts';
import { formatText } from './text-format.ts';

export type AuditFormat = 'ecs' | 'cef' | 'text';
/** A pure function: one record → one line (no line breaks inside). */
export type RecordFormatter = (record: AuditRecord) => string;

export const FORMATTERS: Readonly<Record<AuditFormat, RecordFormatter>> = Object.freeze({
  ecs: formatEcs,
  cef: formatCef,
  text: formatText,
});
