import { readFileSync } from 'node:fs';
import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';
import { connect, type PeerCertificate } from 'node:tls';

/** Envoy's TCP-cluster ALPN under ISTIO_MUTUAL with metadata exchange (istio `ALPNInMeshWithMxc`). */
export const ISTIO_TCP_ALPN = ['istio-peer-exchange', 'istio'] as const;
/** What Istio's `istio.alpn` filter sets for an HTTP/1.1 upstream. */
export const ISTIO_HTTP11_ALPN = ['istio-http/1.1', 'istio', 'http/1.1'] as const;

/** Istio's default SNI for a cluster without subset: `outbound_.<port>_._.<host>`. */
export function istioSni(port: number, host: string): string {
  return `outbound_.${port}_._.${host}`;
}

/**
 * Envoy's `match_typed_subject_alt_names` with an exact URI matcher, as istiod configures it from
 * the secure-naming list: some URI SAN must equal `expected`, and nothing else (no hostname check).
 * Parses Node's SAN string only for URI entries; a JSON-quoted value (CVE-2021-44532 escaping)
 * cannot be a legal SPIFFE ID and never matches.
 */
export function exactUriSanCheck(expected: string): (host: string, cert: PeerCertificate) => Error | undefined {
  return (_host, cert) => {
    const uris = (cert.subjectaltname ?? '')
      .split(', ')
      .filter((entry) => entry.startsWith('URI:'))
      .map((entry) => entry.slice(4));
    return uris.includes(expected)
      ? undefined
      : new Error(`secure naming: peer URI SANs ${JSON.stringify(uris)} do not include ${expected}`);
  };
}

export interface SidecarConnection {
  readonly alpnProtocol: string | false | null;
  readonly protocol: string | null;
  readonly servername: string;
}

export interface IstioClientSidecar {
  readonly port: number;
  /** One entry per upstream TLS session, in order. */
  readonly connections: SidecarConnection[];
  readonly errors: Error[];
  close(): Promise<void>;
}

/**
 * A client-side sidecar on loopback: plain TCP in, mTLS out, with exactly what an Istio sidecar
 * sends under ISTIO_MUTUAL (SNI `outbound_…`, ALPN `istio-peer-exchange, istio`, leaf +
 * intermediate + root, TLS 1.2–1.3) and what it checks (mesh root + exact URI SAN). stunnel
 * cannot play this part fully: it has no ALPN option. If the server ever selected
 * `istio-peer-exchange`, Envoy would start Istio's metadata-exchange framing; this sidecar refuses
 * such a session instead of relaying, so the test sees it.
 */
export async function startIstioClientSidecar(options: {
  upstream: { host: string; port: number };
  certPath: string;
  keyPath: string;
  caPath: string;
  sni: string;
  expectedSan: string;
  alpn?: readonly string[];
  minVersion?: 'TLSv1.2' | 'TLSv1.3';
  maxVersion?: 'TLSv1.2' | 'TLSv1.3';
}): Promise<IstioClientSidecar> {
  const cert = readFileSync(options.certPath);
  const key = readFileSync(options.keyPath);
  const ca = readFileSync(options.caPath);
  const connections: SidecarConnection[] = [];
  const errors: Error[] = [];
  const open = new Set<Socket>();
  const server: Server = createServer((downstream) => {
    open.add(downstream);
    downstream.once('close', () => open.delete(downstream));
    downstream.pause();
    const upstream = connect({
      host: options.upstream.host,
      port: options.upstream.port,
      servername: options.sni,
      ALPNProtocols: [...(options.alpn ?? ISTIO_TCP_ALPN)],
      cert,
      key,
      ca,
      minVersion: options.minVersion ?? 'TLSv1.2',
      maxVersion: options.maxVersion ?? 'TLSv1.3',
      checkServerIdentity: exactUriSanCheck(options.expectedSan),
    });
    open.add(upstream);
    upstream.once('close', () => open.delete(upstream));
    upstream.once('secureConnect', () => {
      connections.push({
        alpnProtocol: upstream.alpnProtocol,
        protocol: upstream.getProtocol(),
        servername: options.sni,
      });
      if (upstream.alpnProtocol === 'istio-peer-exchange') {
        errors.push(new Error('server selected istio-peer-exchange: Envoy would now expect metadata-exchange frames'));
        upstream.destroy();
        downstream.destroy();
        return;
      }
      downstream.pipe(upstream);
      upstream.pipe(downstream);
      downstream.resume();
    });
    upstream.on('error', (error) => {
      errors.push(error);
      // Pass a reset on as a reset, like a TCP proxy would, so the app sees what the sidecar saw.
      if ((error as NodeJS.ErrnoException).code === 'ECONNRESET') downstream.resetAndDestroy();
      else downstream.destroy();
    });
    downstream.on('error', () => upstream.destroy());
    downstream.on('end', () => upstream.end());
    upstream.on('end', () => downstream.end());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  return {
    port: (server.address() as AddressInfo).port,
    connections,
    errors,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of open) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
