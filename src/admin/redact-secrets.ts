const REDACTED = '<redacted>';

/** A copy of `value` with every secret-looking key (token, password, secret) replaced, for GET /config. */
export function redactSecrets(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(redactSecrets);
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value).map(([key, inner]) => [
        key,
        /token|password|secret/i.test(key) ? REDACTED : redactSecrets(inner),
      ]),
    );
  }
  return value;
}
