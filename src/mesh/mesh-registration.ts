import { isIP } from 'node:net';
import { GatewayError } from '../core/errors.ts';
import { parseTrustDomain } from '../identity/spiffe-id.ts';

export type RegistrationStyle = 'register' | 'workloadentry';

/** What a platform team types: the strings straight from the CLI. */
export interface MeshRegistrationInput {
  readonly name: string;
  readonly namespace: string;
  /** One gateway address, or several separated by commas (one per gateway instance). */
  readonly address: string;
  readonly port: string | number;
  readonly serviceAccount: string;
  readonly style?: string;
  readonly trustDomain?: string;
  /** ServiceEntry/DestinationRule host; defaults to the name a Kubernetes Service would get. */
  readonly host?: string;
  /** The cluster's DNS domain (kubelet `--cluster-domain`), not to be confused with the trust domain. */
  readonly clusterDomain?: string;
}

/** A validated registration and every name derived from it, so the renderers never re-derive. */
export interface MeshRegistration {
  readonly style: RegistrationStyle;
  readonly name: string;
  readonly namespace: string;
  readonly addresses: readonly string[];
  readonly port: number;
  /**
   * `tcp-` prefix on purpose: Istio picks the protocol from the port name, and a port it treats
   * as HTTP (or sniffs) answers an app's CONNECT with `404 NR` in the client sidecar.
   */
  readonly portName: string;
  readonly serviceAccount: string;
  readonly trustDomain: string;
  readonly host: string;
  /** The URI SAN every client sidecar will demand from the gateway certificate (secure naming). */
  readonly spiffeId: string;
  /** The SNI an Istio client sidecar sends: `outbound_.<port>_._.<host>` (no subset). */
  readonly sni: string;
  readonly labels: Readonly<Record<string, string>>;
}

// Kubernetes name rules (apimachinery validation): Service names are DNS-1035 labels, namespaces
// DNS-1123 labels, service accounts DNS-1123 subdomains.
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

function invalid(option: string, value: unknown, why: string): GatewayError {
  return new GatewayError('EGW_CONFIG_INVALID', `--${option} ${JSON.stringify(value)}: ${why}`, {
    details: { option },
  });
}

function check(option: string, value: string, pattern: RegExp, maxLength: number, what: string): string {
  if (value.length === 0 || value.length > maxLength || !pattern.test(value)) {
    throw invalid(option, value, `expected ${what} (at most ${maxLength} characters)`);
  }
  return value;
}

function parsePort(value: string | number): number {
  const text = String(value).trim();
  const port = /^\d{1,5}$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw invalid('port', value, 'expected a TCP port from 1 to 65535');
  return port;
}

function parseAddresses(value: string): string[] {
  const addresses = value
    .split(',')
    .map((part) => part.trim())
    .filter(Boolean);
  if (addresses.length === 0) throw invalid('address', value, 'expected an IP address');
  for (const address of addresses) {
    // An Endpoints/WorkloadEntry address must be an IP; a name would need DNS resolution in the
    // ServiceEntry, which changes how Istio builds the cluster (and what the sidecar dials).
    if (isIP(address) === 0)
      throw invalid('address', address, 'expected an IP address (IPv4 or IPv6), not a host name');
  }
  if (new Set(addresses).size !== addresses.length) throw invalid('address', value, 'an address is listed twice');
  return addresses;
}

/** The Kubernetes names, checked in the order the options are documented. */
function parseNames(input: MeshRegistrationInput) {
  const name = check(
    'name',
    input.name,
    DNS1035_LABEL,
    63,
    'a Kubernetes Service name: lowercase letters, digits and "-", starting with a letter',
  );
  const namespace = check(
    'namespace',
    input.namespace,
    DNS1123_LABEL,
    63,
    'a Kubernetes namespace: lowercase letters, digits and "-"',
  );
  const serviceAccount = check(
    'service-account',
    input.serviceAccount,
    DNS1123_SUBDOMAIN,
    253,
    'a Kubernetes service account name',
  );
  const clusterDomain = check(
    'cluster-domain',
    input.clusterDomain ?? 'cluster.local',
    DNS1123_SUBDOMAIN,
    253,
    'a DNS domain',
  );
  return { name, namespace, serviceAccount, clusterDomain };
}

function parseTrustDomainOption(value: string | undefined): string {
  try {
    return parseTrustDomain(value ?? 'cluster.local');
  } catch (error) {
    throw invalid('trust-domain', value, (error as Error).message);
  }
}

/** Validates the CLI input and derives names; every error names the option at fault. */
export function parseMeshRegistration(input: MeshRegistrationInput): MeshRegistration {
  const style = input.style ?? 'workloadentry';
  if (style !== 'register' && style !== 'workloadentry')
    throw invalid('style', style, 'expected register or workloadentry');
  const { name, namespace, serviceAccount, clusterDomain } = parseNames(input);
  const trustDomain = parseTrustDomainOption(input.trustDomain);
  const host = check(
    'host',
    input.host ?? `${name}.${namespace}.svc.${clusterDomain}`,
    DNS1123_SUBDOMAIN,
    253,
    'a DNS name',
  );
  const port = parsePort(input.port);
  return Object.freeze({
    style,
    name,
    namespace,
    addresses: Object.freeze(parseAddresses(input.address)),
    port,
    portName: 'tcp-proxy',
    serviceAccount,
    trustDomain,
    host,
    spiffeId: `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`,
    sni: `outbound_.${port}_._.${host}`,
    labels: Object.freeze({
      app: name,
      'app.kubernetes.io/name': name,
      'app.kubernetes.io/component': 'egress-gateway',
    }),
  });
}
