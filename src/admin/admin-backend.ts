import type { PolicyCheckInput, PolicyCheckResult } from '../proxy/check-policy.ts';

export interface Readiness {
  readonly ready: boolean;
  readonly reasons: readonly string[];
}

/**
 * What the admin API serves. A single process answers from its own gateway; the cluster primary
 * answers by asking every worker and merging (src/cluster/).
 */
export interface AdminBackend {
  readiness(): Promise<Readiness>;
  metrics(): Promise<{ contentType: string; body: string }>;
  stats(): Promise<unknown>;
  connections(): Promise<unknown>;
  /** The running configuration, secrets redacted, with `pendingRestart`: restart-only keys the file changed. */
  effectiveConfig(): Promise<unknown>;
  reload(): Promise<{ ok: boolean; error?: string; details?: unknown }>;
  policyCheck(input: PolicyCheckInput): Promise<PolicyCheckResult>;
}
