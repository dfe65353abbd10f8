/** Environment variable carrying the primary's last good configuration text to forked workers. */
export const CONFIG_SNAPSHOT_ENV = 'EGW_CONFIG_SNAPSHOT';

/** Messages between the cluster primary (which serves the admin API) and its workers. */
export type AdminOperation = 'readiness' | 'stats' | 'connections' | 'effectiveConfig' | 'reload' | 'policyCheck';

export interface AdminRequest {
  readonly type: 'egw-admin';
  readonly id: number;
  readonly op: AdminOperation;
  readonly args?: unknown;
}

export interface AdminReply {
  readonly type: 'egw-admin-reply';
  readonly id: number;
  readonly result?: unknown;
  readonly error?: { code?: string; message: string };
}

export function isAdminRequest(message: unknown): message is AdminRequest {
  return typeof message === 'object' && message !== null && (message as { type?: unknown }).type === 'egw-admin';
}

export function isAdminReply(message: unknown): message is AdminReply {
  return typeof message === 'object' && message !== null && (message as { type?: unknown }).type === 'egw-admin-reply';
}

/** A worker sends this once it serves: listeners bound, start-up checks passed, admin IPC answering. */
export interface WorkerReady {
  readonly type: 'egw-worker-ready';
}

export function isWorkerReady(message: unknown): message is WorkerReady {
  return typeof message === 'object' && message !== null && (message as { type?: unknown }).type === 'egw-worker-ready';
}
