/**
 * The one table of stable error codes. Callers, audit records and the admin API match on `code`,
 * never on message text or `instanceof`. A code, once shipped, is never reused for another meaning.
 */
export const ERROR_CODES = {
  // configuration and start-up
  EGW_CONFIG_READ: 'the configuration file could not be read',
  EGW_CONFIG_INVALID: 'the configuration is invalid',
  EGW_SNAT_UNBINDABLE: 'a SNAT source address is not bindable on this host',
  EGW_LISTEN_FAILED: 'a listener could not bind its address',
  // PKI (certificate files and minting)
  EGW_PKI_FILE: 'a certificate or key file could not be read or parsed',
  EGW_PKI_ARGUMENT: 'a PKI command argument is invalid',
  // identity: why a client certificate was refused
  EGW_IDENTITY_NO_CERT: 'the client presented no certificate',
  EGW_IDENTITY_CHAIN_UNTRUSTED: 'the client chain does not lead to a configured trust anchor',
  EGW_IDENTITY_EXPIRED: 'a certificate in the client chain has expired',
  EGW_IDENTITY_NOT_YET_VALID: 'a certificate in the client chain is not yet valid',
  EGW_IDENTITY_LEAF_IS_CA: 'the client leaf certificate is a CA',
  EGW_IDENTITY_LEAF_KEY_USAGE: 'the client leaf KeyUsage violates the X.509-SVID rules',
  EGW_IDENTITY_ISSUER_NOT_CA: 'a certificate in the client chain is signed by a non-CA certificate',
  EGW_IDENTITY_PATH_LENGTH: 'the client chain exceeds an issuer pathLenConstraint',
  EGW_IDENTITY_URI_SAN_COUNT: 'the client leaf does not have exactly one URI SAN',
  EGW_IDENTITY_SPIFFE_ID_INVALID: 'the client URI SAN is not a valid SPIFFE ID',
  EGW_IDENTITY_TRUST_DOMAIN: 'the client SPIFFE ID is not in the configured trust domain',
  EGW_IDENTITY_MALFORMED: 'the client certificate could not be parsed',
  EGW_IDENTITY_CHAIN_TOO_LARGE: 'the client chain exceeds a certificate size or count limit',
  EGW_IDENTITY_KEY_POLICY: 'a certificate in the client chain has a public key outside the key policy',
  EGW_IDENTITY_VERIFY_BUDGET: 'the client chain could not be verified within the verification work budget',
  EGW_IDENTITY_REVOKED: 'a certificate in the client chain is revoked by a configured CRL',
  EGW_IDENTITY_CRL_UNAVAILABLE:
    'identity.crlRequired is set and an issuer in the client chain has no current, valid CRL',
  EGW_IDENTITY_CRITICAL_EXTENSION:
    'a certificate in the client chain has a critical extension the verifier does not process',
  EGW_IDENTITY_NAME_CONSTRAINTS: 'a name in the client chain is outside a CA nameConstraints extension',
  EGW_IDENTITY_NAME_CONSTRAINTS_UNSUPPORTED:
    'a CA in the client chain has nameConstraints of a form the verifier does not enforce',
  EGW_TLS_HANDSHAKE: 'the TLS handshake failed',
  EGW_TLS_HANDSHAKE_TIMEOUT: 'the TLS handshake did not finish in time',
  EGW_TLS_VERIFY_RESULT_UNAVAILABLE:
    "OpenSSL's verify result cannot be read from a TLS connection (start-up self-check)",
  // policy
  EGW_POLICY_DENIED: 'the request was denied by policy',
  EGW_POLICY_DESTINATION_PROHIBITED: 'the destination IP is in a prohibited range',
  // proxying
  EGW_PROXY_BAD_REQUEST: 'the proxy request is malformed',
  EGW_UPSTREAM_DNS: 'the destination host name could not be resolved',
  EGW_UPSTREAM_DNS_TIMEOUT: 'the destination host name got no DNS answer within resolver.timeout',
  EGW_UPSTREAM_DNS_BUSY: 'the caller identity (or the gateway) already has its maximum of DNS lookups in flight',
  EGW_UPSTREAM_TIMEOUT: 'the upstream connection timed out',
  EGW_UPSTREAM_REFUSED: 'the upstream refused the connection',
  EGW_UPSTREAM_UNREACHABLE: 'the upstream could not be reached',
  EGW_UPSTREAM_ERROR: 'the upstream connection failed',
  EGW_UPSTREAM_PARENT_REFUSED: "the rule's parent proxy (rules[].via) answered the CONNECT with a non-2xx status",
  EGW_UPSTREAM_PARENT_UNREACHABLE:
    "the rule's parent proxy (rules[].via) could not be reached or gave no valid answer in time",
  // limits
  EGW_LIMIT_LISTENER_CONNECTIONS: 'the listener is at its maximum number of open connections',
  EGW_LIMIT_IDENTITY_CONNECTIONS: 'the caller identity is at its maximum number of open connections',
  EGW_LIMIT_IDENTITY_RATE: 'the caller identity exceeded its new-connection rate',
  EGW_DRAINING: 'the gateway is draining and accepts no new work',
  EGW_PREHANDSHAKE_REFUSED:
    'sockets from one source were refused or closed before their TLS handshake (first-byte deadline, per-source or listener pre-handshake limit, missing or untrusted PROXY header)',
  // internal
  EGW_INTERNAL: 'an unexpected error in the gateway closed this connection (the process keeps serving)',
  // operations
  EGW_RELOAD_FAILED: 'a configuration reload failed; the running state is kept',
  EGW_ADMIN_UNAUTHORIZED: 'the admin request lacks a valid bearer token',
  EGW_ADMIN_BAD_REQUEST: 'the admin request is malformed',
  // audit delivery (src/audit/): operational log lines carry these codes
  EGW_AUDIT_SINK_INVALID: 'an audit sink cannot be built from its configuration (e.g. an unreadable CA or key file)',
  EGW_AUDIT_SINK_UNAVAILABLE: 'an audit receiver cannot be reached; records stay queued and are retried',
  EGW_AUDIT_RECEIVER_REJECTED:
    'an audit receiver refused records permanently (e.g. HTTP 400/401/403); they are dropped',
  EGW_AUDIT_RECORDS_DROPPED: 'audit records were dropped (queue full, refused, too large or unconfirmed at shutdown)',
  // SPIFFE Workload API identity source (src/sources/workload-api/): operational log lines carry these codes
  EGW_WORKLOAD_API_INVALID: 'the Workload API sent an SVID or bundle that was refused; the last good identity is kept',
  EGW_WORKLOAD_API_UNAVAILABLE:
    'the Workload API agent cannot be reached or ended the stream; the last good identity is kept and it is re-dialled',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

/** Every error the gateway raises on purpose. `details` is structured context for logs and tests. */
export class GatewayError extends Error {
  readonly code: ErrorCode;
  readonly details: Readonly<Record<string, unknown>>;

  constructor(code: ErrorCode, message?: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(message ?? ERROR_CODES[code], options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'GatewayError';
    this.code = code;
    this.details = Object.freeze({ ...(options?.details ?? {}) });
  }
}

export function isGatewayError(value: unknown, code?: ErrorCode): value is GatewayError {
  return value instanceof GatewayError && (code === undefined || value.code === code);
}
