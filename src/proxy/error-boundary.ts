import type { Socket } from 'node:net';
import { type AuditBase, auditEgressRejected } from '../core/audit-records.ts';
import { resetConnection } from './reset-connection.ts';

/** Points where a test-only fault probe (ProxyRuntime.faultProbe) may throw into a connection. */
export type FaultPoint = 'identified' | 'tunnel-open';

/** What the boundary needs of a connection: the socket to reset and the fields to audit with. */
export interface Guarded {
  readonly raw: Socket;
  readonly auditBase: AuditBase;
}

export function describeError(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/** Closes one connection after an unexpected error: audited as `EGW_INTERNAL`, client reset. */
export function failConnection(guarded: Guarded, error: unknown): void {
  try {
    auditEgressRejected(guarded.auditBase, { code: 'EGW_INTERNAL', reason: `internal error: ${describeError(error)}` });
  } finally {
    resetConnection(guarded.raw);
  }
}

/**
 * The per-connection error boundary. Handlers run as fire-and-forget promises; a throw or a
 * rejection that escapes one must close that connection only, never the process: it is audited
 * as `EGW_INTERNAL` (counted by egw_internal_errors_total) and the client gets a reset.
 */
export function guardConnection(guarded: Guarded, task: () => unknown): void {
  try {
    Promise.resolve(task()).catch((error: unknown) => failConnection(guarded, error));
  } catch (error) {
    failConnection(guarded, error);
  }
}
