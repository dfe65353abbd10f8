import { timingSafeEqual } from 'node:crypto';
import Fastify, { type FastifyInstance, type FastifyPluginAsync } from 'fastify';
import { isGatewayError } from '../core/errors.ts';
import type { AdminBackend } from './admin-backend.ts';

export interface AdminServerOptions {
  readonly host: string;
  readonly port: number;
  /** Bearer token for the protected routes (POST, /stats, /connections, /config); undefined = loopback clients only. */
  readonly token?: string;
}

/**
 * Only the two canonical loopback addresses: 127.0.0.6 and friends are what a mesh sidecar's
 * inbound passthrough uses as source, so "any of 127/8" would let mesh traffic in.
 */
function isLoopback(address: string | undefined): boolean {
  return address === '127.0.0.1' || address === '::1' || address === '::ffff:127.0.0.1';
}

function tokenMatches(header: string | undefined, token: string): boolean {
  // Auth schemes are case-insensitive (RFC 7235 §2.1).
  const presented = Buffer.from(/^Bearer +(.+)$/i.exec(header ?? '')?.[1] ?? '');
  const expected = Buffer.from(token);
  return presented.length === expected.length && timingSafeEqual(presented, expected);
}

const policyCheckBody = {
  type: 'object',
  additionalProperties: false,
  required: ['spiffeId'],
  properties: {
    spiffeId: { type: 'string', minLength: 1, maxLength: 2048 },
    listener: { type: 'string', minLength: 1 },
    dest: { type: 'string', minLength: 3, maxLength: 300 },
  },
} as const;

/**
 * Routes that change state (POST) or reveal who talks to what (/stats, /connections, /config),
 * encapsulated with their own auth hook so it never applies to probes or metric scrapes:
 * a bearer token when one is configured, otherwise loopback clients only.
 */
function protectedRoutes(backend: AdminBackend, token: string | undefined): FastifyPluginAsync {
  return async (app) => {
    app.addHook('onRequest', async (request, reply) => {
      const allowed = token
        ? tokenMatches(request.headers.authorization, token)
        : isLoopback(request.socket.remoteAddress);
      if (!allowed) {
        return reply
          .code(401)
          .header('www-authenticate', 'Bearer')
          .send({
            error: 'EGW_ADMIN_UNAUTHORIZED',
            message: token
              ? 'a valid bearer token is required'
              : 'set admin.token to allow this route from non-loopback clients',
          });
      }
    });
    app.get('/stats', async () => backend.stats());
    app.get('/connections', async () => backend.connections());
    app.get('/config', async () => backend.effectiveConfig());
    app.post('/reload', async (_request, reply) => {
      const result = await backend.reload();
      return reply.code(result.ok ? 200 : 422).send(result);
    });
    app.post<{ Body: { spiffeId: string; listener?: string; dest?: string } }>(
      '/policy/check',
      { schema: { body: policyCheckBody } },
      async (request, reply) => {
        try {
          return await backend.policyCheck(request.body);
        } catch (error) {
          if (isGatewayError(error)) return reply.code(400).send({ error: error.code, message: error.message });
          throw error;
        }
      },
    );
  };
}

/** The admin API: probes, Prometheus metrics, live stats, the running config, reload and policy dry-runs. */
export function buildAdminServer(backend: AdminBackend, options: Pick<AdminServerOptions, 'token'>): FastifyInstance {
  const app = Fastify({ logger: false, bodyLimit: 64 * 1024 });
  app.get('/healthz', async () => ({ status: 'alive' }));
  app.get('/readyz', async (_request, reply) => {
    const readiness = await backend.readiness();
    return reply
      .code(readiness.ready ? 200 : 503)
      .send({ status: readiness.ready ? 'ready' : 'not-ready', reasons: readiness.reasons });
  });
  app.get('/metrics', async (_request, reply) => {
    const { contentType, body } = await backend.metrics();
    return reply.type(contentType).send(body);
  });
  app.register(protectedRoutes(backend, options.token));
  app.setErrorHandler((error, _request, reply) => {
    const status = (error as { statusCode?: number }).statusCode ?? 500;
    if (status >= 500) process.stderr.write(`admin API error: ${(error as Error).stack ?? String(error)}\n`);
    // Validation errors carry their own message; anything else is reported without internals.
    reply.code(status).send({
      error: status < 500 ? 'EGW_ADMIN_BAD_REQUEST' : 'internal',
      message: status < 500 ? (error as Error).message : 'internal error',
    });
  });
  return app;
}

export async function startAdminServer(backend: AdminBackend, options: AdminServerOptions): Promise<FastifyInstance> {
  const app = buildAdminServer(backend, options);
  await app.listen({ host: options.host, port: options.port });
  return app;
}
