import { isIP } from 'node:net';
import { z } from 'zod';
import { auditConfigSchema } from '../audit/audit-config-schema.ts';
import { parseDuration } from '../core/duration.ts';

/**
 * The configuration file's contract (YAML). Unknown keys are errors, so a typo never silently
 * falls back to a default. Durations are strings like "10s"/"5m" or numbers of milliseconds.
 */
const hostPort = z
  .string()
  .regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'expected host:port, e.g. 127.0.0.1:3128')
  .refine((v) => Number(v.slice(v.lastIndexOf(':') + 1)) <= 65535, 'the port must be from 0 to 65535');
const ipAddress = z.string().refine((v) => isIP(v) !== 0, 'expected an IP address');
const duration = z.union([z.string(), z.number()]).transform((value, ctx) => {
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
const name = z
  .string()
  .regex(/^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$/i, 'expected a name of letters, digits, "-", "_" or "."');

export const configSchema = z.strictObject({
  identity: z.strictObject({
    trustDomain: z
      .string()
      .min(1)
      .max(255)
      .regex(/^[a-z0-9._-]+$/, 'a SPIFFE trust domain is lower-case letters, digits, dots, dashes and underscores'),
    trustAnchors: z.string().min(1),
    cert: z.string().min(1),
    key: z.string().min(1),
    /** Dev only: mint a throw-away PKI into `dir` when the files above are missing. */
    devPki: z.strictObject({ generateIfMissing: z.boolean().default(false), dir: z.string().min(1) }).optional(),
    /** CRL files (PEM or DER), signature-checked against trustAnchors; reloaded with them (issue 10). */
    crls: z.array(z.string().min(1)).default([]),
    /** true: a chain whose issuer has no current, valid CRL is refused. */
    crlRequired: z.boolean().default(false),
    /** Bounds on a client chain, checked before it is parsed or any signature is checked (issue 9). */
    limits: z
      .strictObject({
        maxCertificateBytes: z.number().int().min(1024).max(1_048_576).default(16_384),
        maxChainCertificates: z.number().int().min(1).max(16).default(9),
        maxChainBytes: z.number().int().min(1024).max(1_048_576).default(65_536),
        verifyWorkBudget: z.number().min(1).max(10_000).default(32),
      })
      .default({ maxCertificateBytes: 16_384, maxChainCertificates: 9, maxChainBytes: 65_536, verifyWorkBudget: 32 }),
  }),
  listeners: z
    .array(
      z.strictObject({
        name,
        listen: hostPort,
        mode: z.enum(['connect', 'tcp']),
        snat: ipAddress.optional(),
        upstream: hostPort.optional(),
        maxConnections: z.number().int().min(0).default(10_000),
      }),
    )
    .min(1, 'at least one listener is required'),
  rules: z
    .array(
      z.strictObject({
        name,
        listeners: z.array(z.string()).min(1).optional(),
        from: z
          .strictObject({
            namespaces: z.array(z.string()).min(1).optional(),
            serviceAccounts: z.array(z.string()).min(1).optional(),
            spiffeIds: z.array(z.string()).min(1).optional(),
          })
          .optional(),
        to: z
          .strictObject({
            hosts: z.array(z.string()).min(1).optional(),
            ports: z.array(z.number().int().min(1).max(65535)).min(1).optional(),
            cidrs: z.array(z.string()).min(1).optional(),
          })
          .optional(),
        action: z.enum(['allow', 'deny']),
        snat: ipAddress.optional(),
      }),
    )
    .default([]),
  resolver: z
    .strictObject({
      /** Static name → IP answers consulted before DNS, like curl --resolve or /etc/hosts. */
      hosts: z.record(z.string(), ipAddress).default({}),
      timeout: duration.default(5_000),
    })
    .default({ hosts: {}, timeout: 5_000 }),
  timeouts: z
    .strictObject({
      handshake: duration.default(10_000),
      requestHead: duration.default(10_000),
      connect: duration.default(10_000),
      idle: duration.default(300_000),
      drain: duration.default(30_000),
    })
    .default({ handshake: 10_000, requestHead: 10_000, connect: 10_000, idle: 300_000, drain: 30_000 }),
  limits: z
    .strictObject({
      maxHeaderBytes: z.number().int().min(1024).max(1_048_576).default(16_384),
      /** Open connections one SPIFFE ID may hold across all listeners (0 = unlimited). */
      maxConnectionsPerIdentity: z.number().int().min(0).default(1_000),
      /** New connections per second per SPIFFE ID (0 = unlimited). */
      newConnectionsPerSecondPerIdentity: z.number().min(0).default(0),
      /** Token-bucket burst for the rate above (default: twice the rate, at least 1). */
      newConnectionBurstPerIdentity: z.number().int().min(1).optional(),
    })
    .default({ maxHeaderBytes: 16_384, maxConnectionsPerIdentity: 1_000, newConnectionsPerSecondPerIdentity: 0 }),
  admin: z
    .strictObject({
      /** host:port of the admin API; "off" disables it. */
      listen: z.union([hostPort, z.literal('off')]).default('127.0.0.1:9901'),
      /** Bearer token required by POST routes. Without it, POST routes are served on loopback only. */
      token: z.string().min(16, 'use at least 16 characters').optional(),
      tokenFile: z.string().min(1).optional(),
      /** /readyz fails when the gateway certificate or an anchor expires within this window. */
      certExpiryWindow: duration.default(3_600_000),
      /** Reload when the config file or a certificate file changes (debounced). */
      watch: z.boolean().default(true),
    })
    .default({ listen: '127.0.0.1:9901', certExpiryWindow: 3_600_000, watch: true }),
  /** Worker processes sharing the listeners (node:cluster); 1 = a single process. */
  workers: z.number().int().min(1).max(64).default(1),
  audit: auditConfigSchema,
});

export type GatewayConfig = z.output<typeof configSchema>;
