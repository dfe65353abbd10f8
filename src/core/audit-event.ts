import { randomUUID } from 'node:crypto';
import diagnosticsChannel from 'node:diagnostics_channel';
import type { ErrorCode } from './errors.ts';

/**
 * The format-neutral audit record. The data path builds these and publishes them on a
 * diagnostics_channel; sinks subscribe (src/audit/) through subscribeAudit. Publishing never
 * blocks and never throws into the data path (nor, through a subscriber, into the process), and
 * nothing is built when no sink listens.
 */
export type AuditAction =
  | 'egress-permitted'
  /** Report mode: let through although policy would refuse it (reason, rule: what would have). */
  | 'egress-would-deny'
  | 'egress-rejected'
  | 'egress-closed'
  | 'identity-rejected'
  | 'handshake-refused-aggregate';

/**
 * Why the listener refused or closed a socket before its TLS handshake (see src/listener/pre-handshake-gate.ts).
 * `proxy_header`: no valid PROXY v2 header in time; `proxy_untrusted`: a peer outside `proxyProtocolFrom`.
 */
export type PreHandshakeRefusal =
  | 'first_byte_timeout'
  | 'source_limit'
  | 'source_penalty'
  | 'listener_limit'
  | 'proxy_header'
  | 'proxy_untrusted';

export interface AuditPeerCertificate {
  readonly serialNumber: string;
  readonly issuer: string;
  readonly subject: string;
  readonly sha256: string;
  readonly notBefore: string;
  readonly notAfter: string;
  readonly alternativeNames: readonly string[];
}

export interface AuditRecord {
  /** Unique per record, for at-least-once de-duplication downstream. */
  readonly id: string;
  /** Shared by every record of one client connection (decision and close). */
  readonly connectionId: string;
  readonly action: AuditAction;
  readonly timestamp: string;
  readonly reason: string;
  readonly code?: ErrorCode;
  readonly listener: string;
  readonly mode: 'connect' | 'tcp';
  readonly source: { readonly ip: string; readonly port: number };
  readonly identity?: {
    readonly spiffeId: string;
    readonly trustDomain: string;
    readonly namespace?: string;
    readonly serviceAccount?: string;
  };
  readonly certificate?: AuditPeerCertificate;
  readonly tls?: { readonly version?: string; readonly cipher?: string; readonly serverName?: string };
  readonly destination?: { readonly domain?: string; readonly ip?: string; readonly port?: number };
  readonly snat?: { readonly ip: string; readonly port?: number };
  readonly rule?: { readonly name: string };
  /** The parent proxy (rules[].via) the upstream connection went to: host as configured, its IP once dialled. */
  readonly parent?: { readonly address: string; readonly ip?: string; readonly port: number };
  readonly http?: { readonly method: string; readonly url?: string; readonly statusCode?: number };
  readonly start?: string;
  readonly end?: string;
  /** Nanoseconds, as ECS `event.duration`. */
  readonly durationNs?: number;
  /** Bytes the client sent towards the destination. */
  readonly bytesFromClient?: number;
  /** Bytes the destination sent back to the client. */
  readonly bytesToClient?: number;
  /** `handshake-refused-aggregate`: sockets from `source.ip` refused between `start` and `end`, by reason. */
  readonly refusals?: {
    readonly total: number;
    readonly byReason: Readonly<Partial<Record<PreHandshakeRefusal, number>>>;
  };
}

export const AUDIT_CHANNEL_NAME = 'mesh-egress-gateway:audit';
const channel = diagnosticsChannel.channel(AUDIT_CHANNEL_NAME);

export function hasAuditSubscribers(): boolean {
  return channel.hasSubscribers;
}

export function newAuditId(): string {
  return randomUUID();
}

export function publishAudit(record: Omit<AuditRecord, 'id' | 'timestamp'> & { timestamp?: string }): void {
  if (!channel.hasSubscribers) return;
  channel.publish({ id: randomUUID(), timestamp: new Date().toISOString(), ...record } satisfies AuditRecord);
}

let subscriberErrors = 0;

/** How many times an audit subscriber threw, process-wide (egw_audit_subscriber_errors_total). */
export function auditSubscriberErrors(): number {
  return subscriberErrors;
}

/**
 * A subscriber that throws is counted and otherwise ignored: diagnostics_channel would rethrow
 * the error on the next tick as an uncaught exception, ending the process for one bad record, and
 * the data path that published it must not see it either.
 */
export function subscribeAudit(listener: (record: AuditRecord) => void): () => void {
  const handler = (message: unknown) => {
    try {
      listener(message as AuditRecord);
    } catch {
      subscriberErrors += 1;
    }
  };
  channel.subscribe(handler);
  return () => channel.unsubscribe(handler);
}
