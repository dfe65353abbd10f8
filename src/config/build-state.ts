import { readFileSync } from 'node:fs';
import { GatewayError, isGatewayError } from '../core/errors.ts';
import { canonicalHost } from '../core/host-name.ts';
import { loadRevocation, withRevocation } from '../identity/revocation.ts';
import { trustBundleFromCertificates } from '../identity/trust-bundle.ts';
import { certificateFacts } from '../pki/certificate-facts.ts';
import { parseCertificateBundle } from '../pki/pem-bundle.ts';
import { compilePolicy, PolicyCompileError } from '../policy/compile-policy.ts';
import type { GatewayState, ListenerSettings } from '../proxy/gateway-state.ts';
import { createServerTlsContext } from '../tls/server-tls-context.ts';
import { checkSnatAddress } from '../upstream/check-snat-address.ts';
import { createHostResolver } from '../upstream/resolve-host.ts';
import type { GatewayConfig } from './config-schema.ts';
import { resolveConfigPath } from './load-config.ts';

export function splitHostPort(value: string): { host: string; port: number } {
  const index = value.lastIndexOf(':');
  const host = value.slice(0, index);
  return { host: host.startsWith('[') ? host.slice(1, -1) : host, port: Number(value.slice(index + 1)) };
}

function canonicalUpstream(value: string): { host: string; port: number } {
  const { host, port } = splitHostPort(value);
  return { host: canonicalHost(host) as string, port };
}

function readKeyed(source: string, key: string, path: string): string {
  try {
    return readFileSync(resolveConfigPath(path), 'utf8');
  } catch (cause) {
    throw new GatewayError(
      'EGW_PKI_FILE',
      `${source}: ${key}: cannot read ${resolveConfigPath(path)} (${(cause as NodeJS.ErrnoException).code ?? (cause as Error).message})`,
      { cause },
    );
  }
}

function rethrowKeyed(source: string, key: string, error: unknown): never {
  if (isGatewayError(error))
    throw new GatewayError(error.code, `${source}: ${key}: ${error.message}`, { cause: error });
  throw error;
}

/**
 * Compiles a validated configuration into the frozen state connections run on: TLS context,
 * trust bundle, policy matchers, resolver, listener settings. Every failure names the file and
 * key. Also proves each SNAT address is bindable here, so a typo fails the start, not a request.
 */
export async function buildGatewayState(config: GatewayConfig, source: string): Promise<GatewayState> {
  const id = config.identity;
  const certPem = readKeyed(source, 'identity.cert', id.cert);
  const keyPem = readKeyed(source, 'identity.key', id.key);
  const anchorsPem = readKeyed(source, 'identity.trustAnchors', id.trustAnchors);
  let trustBundle: GatewayState['trustBundle'];
  try {
    // From the text already read: OpenSSL and the verifier must see the same anchors even if
    // the file is swapped (Kubernetes Secret update) between two reads.
    const anchorsPath = resolveConfigPath(id.trustAnchors);
    trustBundle = trustBundleFromCertificates(
      id.trustDomain,
      parseCertificateBundle(anchorsPem, anchorsPath),
      anchorsPath,
      id.limits,
    );
  } catch (error) {
    rethrowKeyed(source, 'identity.trustAnchors', error);
  }
  if (id.crlRequired && id.crls.length === 0)
    throw new GatewayError('EGW_CONFIG_INVALID', `${source}: identity.crlRequired: true needs identity.crls`);
  try {
    const revocation = await loadRevocation(id.crls.map(resolveConfigPath), trustBundle, id.crlRequired);
    trustBundle = withRevocation(trustBundle, revocation);
  } catch (error) {
    rethrowKeyed(source, 'identity.crls', error);
  }
  let serverCertificate: GatewayState['serverCertificate'];
  try {
    // parseCertificateBundle throws on an empty bundle, so the leaf is always there.
    const [leaf] = parseCertificateBundle(certPem, resolveConfigPath(id.cert));
    serverCertificate = certificateFacts(leaf as NonNullable<typeof leaf>);
  } catch (error) {
    rethrowKeyed(source, 'identity.cert', error);
  }
  let tlsContext: GatewayState['tlsContext'];
  try {
    tlsContext = createServerTlsContext({ certPem, keyPem, anchorsPem });
  } catch (error) {
    rethrowKeyed(source, 'identity.cert', error);
  }
  let policy: GatewayState['policy'];
  try {
    policy = compilePolicy(
      config.rules,
      id.trustDomain,
      config.listeners.map((l) => l.name),
    );
  } catch (error) {
    if (error instanceof PolicyCompileError)
      throw new GatewayError('EGW_CONFIG_INVALID', `${source}: ${error.message}`);
    throw error;
  }
  for (const name of Object.keys(config.resolver.hosts)) {
    if (!canonicalHost(name))
      throw new GatewayError(
        'EGW_CONFIG_INVALID',
        `${source}: resolver.hosts: ${JSON.stringify(name)} is not a valid host name`,
      );
  }
  config.listeners.forEach((l, i) => {
    if (l.upstream && !canonicalHost(splitHostPort(l.upstream).host)) {
      throw new GatewayError(
        'EGW_CONFIG_INVALID',
        `${source}: listeners[${i}].upstream: ${JSON.stringify(l.upstream)} is not a valid host:port`,
      );
    }
  });
  const snatChecks: Promise<void>[] = [];
  config.listeners.forEach((l, i) => {
    if (l.snat) snatChecks.push(checkSnatAddress(l.snat, `${source}: listeners[${i}].snat`));
  });
  config.rules.forEach((r, i) => {
    if (r.snat) snatChecks.push(checkSnatAddress(r.snat, `${source}: rules[${i}].snat`));
  });
  await Promise.all(snatChecks);
  const listeners = new Map<string, ListenerSettings>(
    config.listeners.map((l) => {
      const { host, port } = splitHostPort(l.listen);
      return [
        l.name,
        Object.freeze({
          name: l.name,
          host,
          port,
          mode: l.mode,
          maxConnections: l.maxConnections,
          ...(l.snat ? { snat: l.snat } : {}),
          ...(l.upstream ? { upstream: Object.freeze(canonicalUpstream(l.upstream)) } : {}),
        }),
      ];
    }),
  );
  return Object.freeze({
    tlsContext,
    trustBundle,
    serverCertificate,
    policy,
    resolver: createHostResolver(config.resolver.hosts, config.resolver.timeout),
    timeouts: Object.freeze({
      handshakeMs: config.timeouts.handshake,
      requestHeadMs: config.timeouts.requestHead,
      connectMs: config.timeouts.connect,
      idleMs: config.timeouts.idle,
    }),
    maxHeaderBytes: config.limits.maxHeaderBytes,
    identityLimits: Object.freeze({
      maxConnectionsPerIdentity: config.limits.maxConnectionsPerIdentity,
      newConnectionsPerSecond: config.limits.newConnectionsPerSecondPerIdentity,
      burst:
        config.limits.newConnectionBurstPerIdentity ??
        Math.max(1, Math.ceil(config.limits.newConnectionsPerSecondPerIdentity * 2)),
    }),
    listeners,
  });
}
