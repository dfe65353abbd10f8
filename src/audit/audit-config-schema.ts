import { z } from 'zod';
import { parseDuration } from '../core/duration.ts';
import { FACILITIES, type FacilityName, isSdName } from './formats/syslog-message.ts';

/**
 * `audit:` section of the configuration. Owned by the audit stage; config-schema.ts embeds it.
 * Optional keys stay absent in the parsed config; their defaults live in SINK_DEFAULTS so the
 * builder, the docs (docs/audit.md) and the tests read one table.
 */
export const SINK_DEFAULTS = Object.freeze({
  queueSize: 10_000,
  dropLogIntervalMs: 10_000,
  syslog: {
    framing: 'octet-counting' as const,
    facility: 'local4' as FacilityName,
    appName: 'egress-gateway',
    sdId: 'egw@32473',
    bom: false,
    confirmIntervalMs: 1_000,
    timeoutMs: 10_000,
    minBackoffMs: 500,
    maxBackoffMs: 30_000,
  },
  http: {
    batchSize: 100,
    maxBatchBytes: 1_000_000,
    flushIntervalMs: 1_000,
    timeoutMs: 10_000,
    minBackoffMs: 500,
    maxBackoffMs: 30_000,
    source: 'mesh-egress-gateway',
  },
});

/** A duration in config: "500ms", "10s", "5m" or milliseconds; shared with config-schema.ts. */
export const duration = z.union([z.string(), z.number()]).transform((value, ctx) => {
  const ms = parseDuration(value);
  if (ms === undefined) {
    ctx.addIssue({
      code: 'custom',
      message: `expected a duration like "500ms", "10s", "5m", got ${JSON.stringify(value)}`,
    });
    return z.NEVER;
  }
  return ms;
});
const hostPort = z
  .string()
  .regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'expected host:port, e.g. siem.example:6514');
const path = z.string().min(1);
const sinkFormat = z.enum(['ecs', 'cef', 'text']);

/** Keys every sink has. `name` labels the sink in stats and log lines (default `<type>#<index>`). */
const common = {
  name: z
    .string()
    .regex(/^[A-Za-z0-9][-A-Za-z0-9_.]*$/, 'expected letters, digits, "-", "_" or "."')
    .optional(),
  format: sinkFormat.default('ecs'),
  /** Records waiting for delivery (in flight included); a record arriving at a full queue is dropped and counted. */
  queueSize: z.number().int().min(1).max(1_000_000).optional(),
};
const backoff = { minBackoff: duration.optional(), maxBackoff: duration.optional() };
const clientTls = { ca: path.optional(), cert: path.optional(), key: path.optional() };

function requirePair(value: { cert?: string | undefined; key?: string | undefined }, ctx: z.RefinementCtx): void {
  if ((value.cert === undefined) !== (value.key === undefined)) {
    ctx.addIssue({
      code: 'custom',
      message: 'cert and key go together (a client certificate needs its key)',
      path: [value.cert === undefined ? 'cert' : 'key'],
    });
  }
}

function checkBackoff(
  value: { minBackoff?: number | undefined; maxBackoff?: number | undefined },
  ctx: z.RefinementCtx,
): void {
  if (value.minBackoff !== undefined && value.maxBackoff !== undefined && value.minBackoff > value.maxBackoff) {
    ctx.addIssue({ code: 'custom', message: 'must not be smaller than minBackoff', path: ['maxBackoff'] });
  }
}

const stdoutSink = z.strictObject({ type: z.literal('stdout'), ...common });

const fileSink = z.strictObject({ type: z.literal('file'), path, ...common });

const syslogSink = z
  .strictObject({
    type: z.literal('syslog'),
    address: hostPort,
    transport: z.enum(['tcp', 'tls', 'udp']),
    ...clientTls,
    /** Name checked against the receiver's certificate (default: the host of `address`). */
    serverName: z.string().min(1).optional(),
    framing: z.enum(['octet-counting', 'lf']).optional(),
    facility: z
      .union([z.enum(Object.keys(FACILITIES) as [FacilityName, ...FacilityName[]]), z.number().int().min(0).max(23)])
      .optional(),
    appName: z.string().min(1).max(48).optional(),
    hostname: z.string().min(1).max(255).optional(),
    sdId: z
      .string()
      .refine(isSdName, 'expected an SD-ID: up to 32 printable characters without =, space, ] or "')
      .optional(),
    bom: z.boolean().optional(),
    confirmInterval: duration.optional(),
    timeout: duration.optional(),
    ...backoff,
    ...common,
  })
  .superRefine((value, ctx) => {
    if (value.transport !== 'tls') {
      for (const key of ['ca', 'cert', 'key', 'serverName'] as const) {
        if (value[key] !== undefined)
          ctx.addIssue({ code: 'custom', message: 'only valid with transport: tls', path: [key] });
      }
    }
    if (value.transport === 'udp') {
      for (const key of ['framing', 'confirmInterval'] as const) {
        if (value[key] !== undefined)
          ctx.addIssue({ code: 'custom', message: 'only valid with transport: tcp or tls', path: [key] });
      }
    }
    requirePair(value, ctx);
    checkBackoff(value, ctx);
  });

const httpSink = z
  .strictObject({
    type: z.literal('http'),
    url: z.url({ protocol: /^https?$/, error: 'expected an http:// or https:// URL' }),
    /** The HEC token (`Authorization: Splunk <token>`); or `tokenFile`, e.g. a mounted Kubernetes secret. */
    token: z.string().min(1).optional(),
    tokenFile: path.optional(),
    ...clientTls,
    batchSize: z.number().int().min(1).max(10_000).optional(),
    maxBatchBytes: z.number().int().min(1024).optional(),
    flushInterval: duration.optional(),
    timeout: duration.optional(),
    /** Attempts after the first one for a batch that fails retryably; absent = keep retrying (the queue bound still applies). */
    maxRetries: z.number().int().min(0).optional(),
    ...backoff,
    index: z.string().min(1).optional(),
    source: z.string().min(1).optional(),
    sourcetype: z.string().min(1).optional(),
    host: z.string().min(1).optional(),
    ...common,
  })
  .superRefine((value, ctx) => {
    if ((value.token === undefined) === (value.tokenFile === undefined)) {
      ctx.addIssue({ code: 'custom', message: 'set exactly one of token and tokenFile', path: ['token'] });
    }
    if (!value.url.startsWith('https:')) {
      for (const key of ['ca', 'cert', 'key'] as const) {
        if (value[key] !== undefined)
          ctx.addIssue({ code: 'custom', message: 'only valid with an https:// url', path: [key] });
      }
    }
    requirePair(value, ctx);
    checkBackoff(value, ctx);
  });

export const auditSinkSchema = z.discriminatedUnion('type', [stdoutSink, fileSink, syslogSink, httpSink]);

export const auditConfigSchema = z
  .strictObject({
    sinks: z.array(auditSinkSchema).default([{ type: 'stdout', format: 'ecs' }]),
    /** How often a sink that dropped records says so in the log (once per interval, with counts). */
    dropLogInterval: duration.optional(),
  })
  .superRefine((value, ctx) => {
    const seen = new Set<string>();
    value.sinks.forEach((sink, index) => {
      const name = sinkName(sink, index);
      if (seen.has(name))
        ctx.addIssue({
          code: 'custom',
          message: `duplicate sink name ${JSON.stringify(name)}`,
          path: ['sinks', index, 'name'],
        });
      seen.add(name);
    });
  })
  .default({ sinks: [{ type: 'stdout', format: 'ecs' }] });

export type AuditConfig = z.output<typeof auditConfigSchema>;
export type AuditSinkConfig = AuditConfig['sinks'][number];

/** A sink's name in stats and logs: `name` if set, else `<type>#<index>`. */
export function sinkName(sink: { type: string; name?: string | undefined }, index: number): string {
  return sink.name ?? `${sink.type}#${index}`;
}
