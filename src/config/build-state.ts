import type { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { GatewayError, isGatewayError } from '../core/errors.ts';
import { canonicalHost } from '../core/host-name.ts';
import { loadRevocation, withRevocation } from '../identity/revocation.ts';
import { parseBundleText, trustBundleFromCertificates, withFederated } from '../identity/trust-bundle.ts';
import { certificateFacts } from '../pki/certificate-facts.ts';
import { parseCertificateBundle } from '../pki/pem-bundle.ts';
import { compilePolicy, PolicyCompileError } from '../policy/compile-policy.ts';
import type { GatewayState } from '../proxy/gateway-state.ts';
import type { IdentityMaterial } from '../sources/identity-material.ts';
import { createServerTlsContext } from '../tls/server-tls-context.ts';
import { createHostResolver } from '../upstream/resolve-host.ts';
import type { GatewayConfig } from './config-schema.ts';
import { checkSnatAddresses, listenerSettings, splitHostPort } from './listener-settings.ts';
import { resolveConfigPath } from './load-config.ts';

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

const toPem = (certs: readonly X509Certificate[]) => certs.map((c) => c.toString().trim()).join('\n');

/** One `identity.trustDomains[i].bundle` file, PEM or SPIFFE bundle JSON, as certificates. */
function readDomainBundle(config: GatewayConfig, source: string, index: number): X509Certificate[] {
  const domain = (config.identity.trustDomains ?? [])[index] as { name: string; bundle: string };
  const key = `identity.trustDomains[${index}].bundle`;
  const text = readKeyed(source, key, domain.bundle);
  try {
    const certs = parseBundleText(text, resolveConfigPath(domain.bundle));
    if (index === 0 && certs.length === 0)
      throw new GatewayError('EGW_PKI_FILE', `${resolveConfigPath(domain.bundle)}: holds no x509-svid key`);
    return certs;
  } catch (error) {
    rethrowKeyed(source, key, error);
  }
}

/** The identity files named in the config, read once, as the same material the Workload API yields. */
function readIdentityFiles(config: GatewayConfig, source: string): IdentityMaterial {
  const id = config.identity;
  if (!id.cert || !id.key || !(id.trustAnchors || id.trustDomains))
    throw new GatewayError('EGW_CONFIG_INVALID', `${source}: identity.workloadApi: no SVID from the agent yet`);
  const federatedBundles = new Map<string, X509Certificate[]>();
  id.trustDomains?.forEach((domain, index) => {
    if (index > 0) federatedBundles.set(domain.name, readDomainBundle(config, source, index));
  });
  return {
    certPem: readKeyed(source, 'identity.cert', id.cert),
    keyPem: readKeyed(source, 'identity.key', id.key),
    anchorsPem: id.trustAnchors
      ? readKeyed(source, 'identity.trustAnchors', id.trustAnchors)
      : toPem(readDomainBundle(config, source, 0)),
    source: resolveConfigPath(id.cert),
    federatedBundles,
  };
}

/** Where a trust domain's bundle came from (for messages), and the config key to blame. */
function bundleOrigin(config: GatewayConfig, material: IdentityMaterial | undefined, domain: string) {
  const index = config.identity.trustDomains?.findIndex((d) => d.name === domain) ?? -1;
  const listed = config.identity.trustDomains?.[index];
  if (material || !listed) return { path: `${material?.source} bundle ${domain}`, key: 'identity.workloadApi' };
  return { path: resolveConfigPath(listed.bundle), key: `identity.trustDomains[${index}].bundle` };
}

/**
 * The own trust domain's bundle with every federated one attached. From the text already read:
 * OpenSSL and the verifier must see the same anchors even if a file is swapped (Kubernetes Secret
 * update) between two reads.
 */
function compileTrust(
  config: GatewayConfig,
  source: string,
  material: IdentityMaterial | undefined,
  read: IdentityMaterial,
): GatewayState['trustBundle'] {
  const id = config.identity;
  const own = bundleOrigin(config, material, id.trustDomain);
  const ownKey = material ? 'identity.workloadApi' : id.trustAnchors ? 'identity.trustAnchors' : own.key;
  const ownPath = id.trustAnchors && !material ? resolveConfigPath(id.trustAnchors) : own.path;
  let bundle: GatewayState['trustBundle'];
  try {
    bundle = trustBundleFromCertificates(
      id.trustDomain,
      parseCertificateBundle(read.anchorsPem, ownPath),
      ownPath,
      id.limits,
    );
  } catch (error) {
    rethrowKeyed(source, ownKey, error);
  }
  if (read.federatedBundles.size === 0) return bundle;
  const federated = [...read.federatedBundles].map(([domain, certs]) => {
    const origin = bundleOrigin(config, material, domain);
    try {
      return trustBundleFromCertificates(domain, certs, origin.path, id.limits);
    } catch (error) {
      return rethrowKeyed(source, origin.key, error);
    }
  });
  try {
    return withFederated(bundle, federated);
  } catch (error) {
    rethrowKeyed(source, material ? 'identity.workloadApi' : 'identity.trustDomains', error);
  }
}

/**
 * The gateway's own identity and its trust anchors, each read once.
 * `material` is the SVID and bundles when they come from the Workload API; without it the files
 * named in `identity.cert/key` and `trustAnchors` or `trustDomains[].bundle` are read.
 */
function compileIdentity(
  config: GatewayConfig,
  source: string,
  material: IdentityMaterial | undefined,
): Pick<GatewayState, 'tlsContext' | 'trustBundle' | 'serverCertificate'> {
  const read = material ?? readIdentityFiles(config, source);
  const { certPem, keyPem } = read;
  const certPath = material ? material.source : resolveConfigPath(config.identity.cert as string);
  const trustBundle = compileTrust(config, source, material, read);
  // OpenSSL is offered every domain's anchors; which one may end a given SVID's chain is the
  // verifier's choice (identity/verify-svid.ts), by the SVID's trust domain.
  const anchorsPem = [read.anchorsPem.trim(), ...[...read.federatedBundles.values()].map(toPem)]
    .filter((p) => p !== '')
    .join('\n');
  try {
    // parseCertificateBundle throws on an empty bundle, so the leaf is always there.
    const [leaf] = parseCertificateBundle(certPem, certPath);
    const serverCertificate = certificateFacts(leaf as NonNullable<typeof leaf>);
    const tlsContext = createServerTlsContext({ certPem, keyPem, anchorsPem });
    return { tlsContext, trustBundle, serverCertificate };
  } catch (error) {
    rethrowKeyed(source, material ? 'identity.workloadApi' : 'identity.cert', error);
  }
}

/**
 * identity.crls, read and signature-checked against the anchors just compiled, attached to the
 * bundle. Read again on every rebuild (a Workload API update too), but an unchanged CRL is not parsed again.
 */
async function compileRevocation(
  config: GatewayConfig,
  source: string,
  trustBundle: GatewayState['trustBundle'],
): Promise<GatewayState['trustBundle']> {
  const { crls, crlRequired } = config.identity;
  if (crlRequired && crls.length === 0)
    throw new GatewayError('EGW_CONFIG_INVALID', `${source}: identity.crlRequired: true needs identity.crls`);
  try {
    return withRevocation(trustBundle, await loadRevocation(crls.map(resolveConfigPath), trustBundle, crlRequired));
  } catch (error) {
    rethrowKeyed(source, 'identity.crls', error);
  }
}

function compileRules(config: GatewayConfig, source: string): GatewayState['policy'] {
  try {
    // Workload API federation is decided by the agent at run time: a rule may name any trust domain.
    const domains = config.identity.workloadApi ? 'any' : (config.identity.trustDomains ?? []).map((d) => d.name);
    return compilePolicy(
      config.rules,
      config.identity.trustDomain,
      config.listeners.map((l) => l.name),
      domains,
    );
  } catch (error) {
    if (error instanceof PolicyCompileError)
      throw new GatewayError('EGW_CONFIG_INVALID', `${source}: ${error.message}`);
    throw error;
  }
}

/** Host names the schema cannot judge: static resolver answers and tcp upstreams must be canonical hosts. */
function checkHostNames(config: GatewayConfig, source: string): void {
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
}

/**
 * Compiles a validated configuration into the frozen state connections run on: TLS context,
 * trust bundle, policy matchers, resolver, listener settings. Every failure names the file and key.
 * `identity` is the gateway's SVID and anchors when they come from the Workload API; without it
 * the files named in `identity.cert/key/trustAnchors` are read.
 */
export async function buildGatewayState(
  config: GatewayConfig,
  source: string,
  identity?: IdentityMaterial,
): Promise<GatewayState> {
  const own = compileIdentity(config, source, identity);
  const trustBundle = await compileRevocation(config, source, own.trustBundle);
  const policy = compileRules(config, source);
  checkHostNames(config, source);
  await checkSnatAddresses(config, source);
  const { limits } = config;
  return Object.freeze({
    ...own,
    trustBundle,
    policy,
    resolver: createHostResolver(config.resolver.hosts, {
      timeoutMs: config.resolver.timeout,
      tries: config.resolver.tries,
      servers: config.resolver.servers,
      maxConcurrentPerIdentity: config.resolver.maxConcurrentPerIdentity,
      maxConcurrent: config.resolver.maxConcurrent,
      cacheEntries: config.resolver.cacheEntries,
    }),
    timeouts: Object.freeze({
      handshakeMs: config.timeouts.handshake,
      requestHeadMs: config.timeouts.requestHead,
      connectMs: config.timeouts.connect,
      idleMs: config.timeouts.idle,
      connectionMaxAgeMs: config.timeouts.connectionMaxAge,
    }),
    maxHeaderBytes: limits.maxHeaderBytes,
    maxRequestsPerConnection: limits.maxRequestsPerConnection,
    identityLimits: Object.freeze({
      maxConnectionsPerIdentity: limits.maxConnectionsPerIdentity,
      newConnectionsPerSecond: limits.newConnectionsPerSecondPerIdentity,
      burst:
        limits.newConnectionBurstPerIdentity ?? Math.max(1, Math.ceil(limits.newConnectionsPerSecondPerIdentity * 2)),
    }),
    listeners: listenerSettings(config),
  });
}
