import type { X509Certificate } from 'node:crypto';

/**
 * The gateway's own identity and trust, from whichever source provides them: the files named in
 * `identity.cert/key/trustAnchors`, or the SPIFFE Workload API. A state rebuild takes one of these
 * and never looks at where it came from, so both sources go through the same checks.
 */
export interface IdentityMaterial {
  /** The gateway's SVID chain, leaf first, PEM. */
  readonly certPem: string;
  /** Its PKCS#8 private key, PEM. */
  readonly keyPem: string;
  /** The trust anchors of the configured trust domain, PEM. */
  readonly anchorsPem: string;
  /** Where it came from, for messages, e.g. "Workload API unix:///run/spire/sockets/agent.sock". */
  readonly source: string;
  /** Bundles of federated trust domains, by trust domain name (empty for file-based identity). */
  readonly federatedBundles: ReadonlyMap<string, readonly X509Certificate[]>;
}
