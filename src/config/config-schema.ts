import { isIP } from 'node:net';
import { z } from 'zod';
import { auditConfigSchema, duration } from '../audit/audit-config-schema.ts';
import { parseCidr } from '../core/ip-set.ts';

/**
 * The configuration file's contract (YAML). Unknown keys are errors, so a typo never silently
 * falls back to a default. Durations are strings like "10s"/"5m" or numbers of milliseconds.
 */
const hostPort = z
  .string()
  .regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'expected host:port, e.g. 127.0.0.1:3128')
  .refine((v) => Number(v.slice(v.lastIndexOf(':') + 1)) <= 65535, 'the port must be from 0 to 65535');
const ipAddress = z.string().refine((v) => isIP(v) !== 0, 'expected an IP address');
/** A DNS server as c-ares takes it: `ip`, `ip:port`, `ipv6` or `[ipv6]:port`. */
const dnsServer = z.string().refine((v) => {
  const bracketed = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(v);
  const plain = /^([0-9.]+)(?::(\d{1,5}))?$/.exec(v);
  const [, ip, port] = bracketed ?? plain ?? [undefined, v, undefined];
  return isIP(ip ?? '') !== 0 && (port === undefined || Number(port) <= 65535);
}, 'expected a DNS server address: ip, ip:port or [ipv6]:port, e.g. 127.0.0.53:53');
const cidr = z.string().refine((v) => parseCidr(v) !== undefined, 'expected a CIDR range like 10.0.0.0/8 or an IP');
/** `snat:` one source address or a pool of them, all of one IP family (a dial's family is chosen once). */
const snatAddresses = z
  .union([ipAddress, z.array(ipAddress).min(1).max(64)])
  .refine(
    (v) => typeof v === 'string' || new Set(v.map((a) => isIP(a))).size === 1,
    'the addresses of a SNAT pool must all be IPv4 or all IPv6',
  );
const snatSelection = z.enum(['per-identity', 'round-robin']);
/** `rules[].via`: a parent HTTP proxy as `http://host:port`; compile-policy.ts checks the host's spelling. */
const parentProxy = z.string().superRefine((value, ctx) => {
  const problem = /^https?:\/\/[^/]*@/i.test(value)
    ? 'credentials in the URL are not supported (the gateway sends no Proxy-Authorization)'
    : !/^http:\/\//.test(value)
      ? 'only an http:// parent proxy is supported, e.g. http://proxy.corp.example:3128'
      : !/^http:\/\/(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}\/?$/.test(value)
        ? 'expected http://host:port with an explicit port and no path, e.g. http://proxy.corp.example:3128'
        : undefined;
  const port = Number(/:(\d+)\/?$/.exec(value)?.[1]);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
  else if (!(port >= 1 && port <= 65535)) ctx.addIssue({ code: 'custom', message: 'the port must be from 1 to 65535' });
});
const name = z
  .string()
  .regex(/^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$/i, 'expected a name of letters, digits, "-", "_" or "."');

const trustDomainName = z
  .string()
  .min(1)
  .max(255)
  .regex(/^[a-z0-9._-]+$/, 'a SPIFFE trust domain is lower-case letters, digits, dots, dashes and underscores');

export const configSchema = z.strictObject({
  identity: z.strictObject({
    /** The short form: one trust domain, with `trustAnchors` (or `workloadApi`). Filled from `trustDomains[0]` otherwise. */
    trustDomain: trustDomainName.optional(),
    /** Federation: every accepted trust domain with its own bundle (PEM or SPIFFE bundle JSON); the first is the gateway's own. */
    trustDomains: z
      .array(z.strictObject({ name: trustDomainName, bundle: z.string().min(1) }))
      .min(1)
      .max(64)
      .optional(),
    /** With `trustDomain`, required unless `workloadApi` is set (exactly one identity source; load-config.ts checks). */
    trustAnchors: z.string().min(1).optional(),
    cert: z.string().min(1).optional(),
    key: z.string().min(1).optional(),
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
    /** The SVID and trust bundles from a SPIFFE Workload API agent, instead of cert/key/trustAnchors. */
    workloadApi: z
      .strictObject({
        socket: z
          .string()
          .regex(/^unix:\/\/\/\S+$/, 'expected unix:///absolute/path.sock, e.g. unix:///run/spire/sockets/agent.sock'),
      })
      .optional(),
  }),
  listeners: z
    .array(
      z.strictObject({
        name,
        listen: hostPort,
        mode: z.enum(['connect', 'tcp']),
        /** report: a request the policy would refuse is let through and audited as egress-would-deny. */
        enforcement: z.enum(['enforce', 'report']).default('enforce'),
        snat: snatAddresses.optional(),
        snatSelection: snatSelection.default('per-identity'),
        upstream: hostPort.optional(),
        maxConnections: z.number().int().min(0).default(10_000),
        /** Every connection starts with a PROXY v2 header from an L4 balancer in `proxyProtocolFrom`. */
        proxyProtocol: z.literal('v2').optional(),
        proxyProtocolFrom: z.array(cidr).min(1).optional(),
        /** tcp mode: send a PROXY v2 header (client address, SPIFFE ID TLV) to the upstream. */
        upstreamProxyProtocol: z.literal('v2').optional(),
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
            /** Every SPIFFE ID of these (configured) trust domains. */
            trustDomains: z.array(z.string()).min(1).optional(),
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
        /** always: this rule's deny refuses on report listeners too. */
        enforce: z.literal('always').optional(),
        snat: snatAddresses.optional(),
        snatSelection: snatSelection.default('per-identity'),
        /** Connect mode: tunnel and forward this rule's traffic through a parent HTTP proxy. */
        via: parentProxy.optional(),
      }),
    )
    .default([]),
  resolver: z
    .strictObject({
      /** Static name → IP answers consulted before DNS, like curl --resolve or /etc/hosts. */
      hosts: z.record(z.string(), ipAddress).default({}),
      /** Overall deadline of one lookup (every try, the AAAA fallback); the query is then cancelled. */
      timeout: duration.default(5_000),
      tries: z.number().int().min(1).max(5).default(2),
      /** DNS servers to ask; empty = the system's /etc/resolv.conf nameservers. */
      servers: z.array(dnsServer).default([]),
      /** Lookups one SPIFFE ID may have in flight; beyond, refused at once (0 = unlimited). */
      maxConcurrentPerIdentity: z.number().int().min(0).default(4),
      maxConcurrent: z.number().int().min(0).default(64),
      /** Positive answers cached for their TTL (at most 5 min); 0 = no cache. */
      cacheEntries: z.number().int().min(0).max(100_000).default(1_024),
    })
    .default({
      hosts: {},
      timeout: 5_000,
      tries: 2,
      servers: [],
      maxConcurrentPerIdentity: 4,
      maxConcurrent: 64,
      cacheEntries: 1_024,
    }),
  timeouts: z
    .strictObject({
      handshake: duration.default(10_000),
      /** A socket that sends no byte within this is closed (capped at `handshake`); then `handshake` still applies. */
      firstByte: duration.pipe(z.number().min(1, 'expected at least 1ms')).default(2_000),
      requestHead: duration.default(10_000),
      connect: duration.default(10_000),
      idle: duration.default(300_000),
      drain: duration.default(30_000),
      /** connect mode: a kept-alive absolute-form connection is closed after this age (0 = never). */
      connectionMaxAge: duration.default(3_600_000),
    })
    .default({
      handshake: 10_000,
      firstByte: 2_000,
      requestHead: 10_000,
      connect: 10_000,
      idle: 300_000,
      drain: 30_000,
      connectionMaxAge: 3_600_000,
    }),
  limits: z
    .strictObject({
      maxHeaderBytes: z.number().int().min(1024).max(1_048_576).default(16_384),
      /** Open connections one SPIFFE ID may hold across all listeners (0 = unlimited). */
      maxConnectionsPerIdentity: z.number().int().min(0).default(1_000),
      /** New connections per second per SPIFFE ID (0 = unlimited). */
      newConnectionsPerSecondPerIdentity: z.number().min(0).default(0),
      /** Token-bucket burst for the rate above (default: twice the rate, at least 1). */
      newConnectionBurstPerIdentity: z.number().int().min(1).optional(),
      /** Sockets per listener that have not finished the TLS handshake, apart from maxConnections (0 = unlimited). */
      maxPreHandshakeSockets: z.number().int().min(0).default(1_000),
      /** Of those, how many one source IP may hold (0 = unlimited). */
      maxPreHandshakeSocketsPerSource: z.number().int().min(0).default(64),
      /** Pre-handshake refusals are audited as one record per source and listener per interval. */
      preHandshakeAuditInterval: duration.pipe(z.number().min(100, 'expected at least 100ms')).default(10_000),
      /** Failed handshakes or identity refusals from one source within the window that start a penalty (0 = off). */
      handshakeFailuresPerSource: z.number().int().min(0).default(8),
      handshakeFailureWindow: duration.pipe(z.number().min(1, 'expected at least 1ms')).default(10_000),
      /** The first penalty (new sockets of the source reset at accept); each further one doubles, up to the max. */
      handshakeFailurePenalty: duration.pipe(z.number().min(1, 'expected at least 1ms')).default(30_000),
      handshakeFailurePenaltyMax: duration.pipe(z.number().min(1, 'expected at least 1ms')).default(600_000),
      /** connect mode: requests on one kept-alive connection before it is closed (0 = unlimited). */
      maxRequestsPerConnection: z.number().int().min(0).default(1_000),
      /** Pooled upstream connection sets (one per SPIFFE ID and SNAT address) kept at once; least recently used out. */
      maxUpstreamPools: z.number().int().min(1).max(100_000).default(1_024),
    })
    .default({
      maxHeaderBytes: 16_384,
      maxConnectionsPerIdentity: 1_000,
      newConnectionsPerSecondPerIdentity: 0,
      maxPreHandshakeSockets: 1_000,
      maxPreHandshakeSocketsPerSource: 64,
      preHandshakeAuditInterval: 10_000,
      handshakeFailuresPerSource: 8,
      handshakeFailureWindow: 10_000,
      handshakeFailurePenalty: 30_000,
      handshakeFailurePenaltyMax: 600_000,
      maxRequestsPerConnection: 1_000,
      maxUpstreamPools: 1_024,
    }),
  admin: z
    .strictObject({
      /** host:port of the admin API; "off" disables it. */
      listen: z.union([hostPort, z.literal('off')]).default('127.0.0.1:9901'),
      /** Bearer token for POST routes and /stats, /connections, /config. Without it they answer loopback only. */
      token: z.string().min(16, 'use at least 16 characters').optional(),
      tokenFile: z.string().min(1).optional(),
      /** /readyz fails when the gateway certificate or an anchor expires within this window. */
      certExpiryWindow: duration.default(3_600_000),
      /** Reload when the config file or a certificate file changes (debounced). */
      watch: z.boolean().default(true),
    })
    .default({ listen: '127.0.0.1:9901', certExpiryWindow: 3_600_000, watch: true }),
  reload: z
    .strictObject({
      /** Re-decide open tunnels against the new rules on reload; identity is always re-checked. */
      redecideTunnels: z.boolean().default(true),
    })
    .default({ redecideTunnels: true }),
  /** Worker processes sharing the listeners (node:cluster); 1 = a single process. */
  workers: z.number().int().min(1).max(64).default(1),
  audit: auditConfigSchema,
});

type ParsedConfig = z.output<typeof configSchema>;
/**
 * The validated configuration. `identity.trustDomain` is always set: parseConfig fills it from
 * `identity.trustDomains[0]` (the gateway's own trust domain) when the federation form is used.
 */
export type GatewayConfig = Omit<ParsedConfig, 'identity'> & {
  readonly identity: ParsedConfig['identity'] & { readonly trustDomain: string };
};
