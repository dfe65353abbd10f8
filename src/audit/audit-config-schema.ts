import { z } from 'zod';

/** `audit:` section of the configuration. Owned by the audit stage; config-schema.ts embeds it. */
const sinkFormat = z.enum(['ecs', 'cef', 'text']);
const stdoutSink = z.strictObject({ type: z.literal('stdout'), format: sinkFormat.default('ecs') });
const fileSink = z.strictObject({ type: z.literal('file'), path: z.string().min(1), format: sinkFormat.default('ecs') });

export const auditConfigSchema = z
  .strictObject({
    sinks: z.array(z.discriminatedUnion('type', [stdoutSink, fileSink])).default([{ type: 'stdout', format: 'ecs' }]),
  })
  .default({ sinks: [{ type: 'stdout', format: 'ecs' }] });

export type AuditConfig = z.output<typeof auditConfigSchema>;
export type AuditSinkConfig = AuditConfig['sinks'][number];
