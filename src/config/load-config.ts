import { readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { GatewayError } from '../core/errors.ts';
import { configSchema, type GatewayConfig } from './config-schema.ts';

export interface LoadedConfig {
  readonly path: string;
  readonly config: GatewayConfig;
}

function keyPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path)
    out += typeof part === 'number' ? `[${part}]` : out === '' ? String(part) : `.${String(part)}`;
  return out || '(root)';
}

/** Freezes `value` and everything reachable from it (already-frozen parts are skipped). */
export function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}

/**
 * Exactly one identity source: the three files, the cert/key files with `trustDomains` (each
 * domain names its bundle), or the Workload API (the agent sends the bundles, federated ones too).
 */
function identitySourceProblems(id: GatewayConfig['identity']): string[] {
  const files = (['cert', 'key', 'trustAnchors', 'trustDomains'] as const).filter((key) => id[key] !== undefined);
  if (id.workloadApi)
    return [...files, ...(id.devPki ? ['devPki'] : [])].map(
      (key) => `identity.${key}: not allowed with identity.workloadApi (the agent provides the SVID and bundles)`,
    );
  if (id.trustDomains) {
    const problems = (['cert', 'key'] as const)
      .filter((key) => id[key] === undefined)
      .map((key) => `identity.${key}: required unless identity.workloadApi is set`);
    if (id.trustAnchors !== undefined)
      problems.push('identity.trustAnchors: not allowed with identity.trustDomains (each domain names its bundle)');
    return problems;
  }
  return (['cert', 'key', 'trustAnchors'] as const)
    .filter((key) => id[key] === undefined)
    .map((key) => `identity.${key}: required unless identity.workloadApi is set`);
}

/** Every file the identity is read from (the gateway watches them for changes). */
export function identityFiles(id: GatewayConfig['identity']): string[] {
  return [id.cert, id.key, id.trustAnchors, ...(id.trustDomains ?? []).map((d) => d.bundle), ...id.crls].flatMap((p) =>
    p ? [resolveConfigPath(p)] : [],
  );
}

type ParsedIdentity = z.output<typeof configSchema>['identity'];

/** Exactly one way to name the trust domains: `trustDomain` (short form) or `trustDomains` (federation). */
function trustFormProblems(id: ParsedIdentity): string[] {
  const problems: string[] = [];
  if (id.trustDomain !== undefined && id.trustDomains !== undefined)
    problems.push(
      'identity.trustDomains: use either identity.trustDomain (with trustAnchors) or identity.trustDomains, not both',
    );
  if (id.trustDomain === undefined && id.trustDomains === undefined)
    problems.push(
      'identity.trustDomain: required: identity.trustDomain (with trustAnchors or workloadApi) or identity.trustDomains',
    );
  const seen = new Set<string>();
  id.trustDomains?.forEach((domain, index) => {
    if (seen.has(domain.name))
      problems.push(`identity.trustDomains[${index}].name: trust domain ${domain.name} is listed twice`);
    seen.add(domain.name);
  });
  return problems;
}

/** Cross-field rules the schema cannot express. Each problem names its key path. */
function crossCheck(config: GatewayConfig): string[] {
  const problems: string[] = identitySourceProblems(config.identity);
  // Each worker would need its own agent streams and the primary a state without an SVID: not built yet.
  if (config.identity.workloadApi && config.workers > 1)
    problems.push('workers: must be 1 with identity.workloadApi (not supported with several workers yet)');
  const names = new Set<string>();
  const binds = new Set<string>();
  config.listeners.forEach((listener, i) => {
    if (names.has(listener.name))
      problems.push(`listeners[${i}].name: duplicate listener name ${JSON.stringify(listener.name)}`);
    names.add(listener.name);
    if (binds.has(listener.listen) && !listener.listen.endsWith(':0'))
      problems.push(`listeners[${i}].listen: ${listener.listen} is used by another listener`);
    binds.add(listener.listen);
    if (listener.mode === 'tcp' && !listener.upstream)
      problems.push(`listeners[${i}].upstream: required when mode is tcp`);
    if (listener.mode === 'connect' && listener.upstream)
      problems.push(`listeners[${i}].upstream: only valid when mode is tcp (connect mode dials the requested host)`);
    problems.push(...proxyProtocolProblems(listener, i));
  });
  return problems;
}

function proxyProtocolProblems(listener: GatewayConfig['listeners'][number], i: number): string[] {
  const problems: string[] = [];
  if (listener.proxyProtocol && !listener.proxyProtocolFrom)
    problems.push(
      `listeners[${i}].proxyProtocolFrom: required with proxyProtocol (the balancer addresses allowed to send it)`,
    );
  if (!listener.proxyProtocol && listener.proxyProtocolFrom)
    problems.push(`listeners[${i}].proxyProtocolFrom: only valid with proxyProtocol: v2`);
  if (listener.upstreamProxyProtocol && listener.mode !== 'tcp')
    problems.push(`listeners[${i}].upstreamProxyProtocol: only valid when mode is tcp`);
  return problems;
}

/** Turns a relative path from the config into an absolute one (relative to the working directory). */
export function resolveConfigPath(path: string): string {
  return isAbsolute(path) ? path : resolve(process.cwd(), path);
}

/**
 * The document as plain data. `toJS` throws for an unresolved alias and for an alias bomb (the
 * yaml library's maxAliasCount guard); both are configuration errors naming the file, not crashes.
 */
function documentValue(document: ReturnType<typeof parseDocument>, source: string): unknown {
  try {
    return document.toJS({ maxAliasCount: 100 });
  } catch (error) {
    throw new GatewayError('EGW_CONFIG_INVALID', `${source}: YAML error: ${(error as Error).message}`);
  }
}

/**
 * Parses and validates a configuration text. Errors list every problem as `file: key.path: message`,
 * then the result is deep-frozen. Nothing is compiled or opened here.
 */
export function parseConfig(text: string, source: string): GatewayConfig {
  const document = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (document.errors.length > 0) {
    throw new GatewayError(
      'EGW_CONFIG_INVALID',
      `${source}: YAML error: ${document.errors.map((e) => e.message).join('; ')}`,
    );
  }
  const result = configSchema.safeParse(documentValue(document, source) ?? {});
  if (!result.success) {
    const issues = (result.error as z.ZodError).issues.map(
      (issue) => `${source}: ${keyPath(issue.path)}: ${issue.message}`,
    );
    throw new GatewayError('EGW_CONFIG_INVALID', `invalid configuration\n  ${issues.join('\n  ')}`, {
      details: { issues },
    });
  }
  const parsed = result.data;
  // The federation form's first domain is the gateway's own: every reader of trustDomain gets it.
  const trustDomain = parsed.identity.trustDomain ?? parsed.identity.trustDomains?.[0]?.name ?? '';
  const config: GatewayConfig = { ...parsed, identity: { ...parsed.identity, trustDomain } };
  const problems = [...trustFormProblems(parsed.identity), ...crossCheck(config)].map((p) => `${source}: ${p}`);
  if (problems.length > 0)
    throw new GatewayError('EGW_CONFIG_INVALID', `invalid configuration\n  ${problems.join('\n  ')}`, {
      details: { issues: problems },
    });
  return deepFreeze(config);
}

export function loadConfig(path: string): LoadedConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new GatewayError('EGW_CONFIG_READ', `${path}: ${(cause as Error).message}`, { cause });
  }
  return { path, config: parseConfig(text, path) };
}

/** The admin bearer token: `admin.token`, or the trimmed content of `admin.tokenFile`. */
export function adminToken(config: GatewayConfig, source: string): string | undefined {
  if (config.admin.token) return config.admin.token;
  if (!config.admin.tokenFile) return undefined;
  try {
    const token = readFileSync(resolveConfigPath(config.admin.tokenFile), 'utf8').trim();
    if (token.length < 16) throw new Error('the token must have at least 16 characters');
    return token;
  } catch (cause) {
    throw new GatewayError('EGW_CONFIG_INVALID', `${source}: admin.tokenFile: ${(cause as Error).message}`, { cause });
  }
}
