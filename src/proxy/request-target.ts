import { canonicalHost } from '../core/host-name.ts';

/** What a forward-proxy request asks for; pure, so it can be fuzzed without sockets. */
export type RequestTarget =
  | { readonly form: 'authority'; readonly host: string; readonly port: number }
  | {
      readonly form: 'absolute';
      readonly host: string;
      readonly port: number;
      /** The Host header to send: the authority as the client wrote it (the origin sees the name). */
      readonly hostHeader: string;
      /** Origin-form path and query to send upstream. */
      readonly path: string;
      readonly url: URL;
    }
  | { readonly form: 'invalid'; readonly reason: string };

/**
 * Parses CONNECT's authority-form target (`host:port` or `[v6]:port`) into the canonical host
 * that policy, resolver and audit all use; undefined when the host could be read two ways.
 */
export function parseAuthority(target: string | undefined): { host: string; port: number } | undefined {
  if (!target) return undefined;
  const match = /^(\[[^\]]+\]|[^\s:/?#[\]@]+):(\d{1,5})$/.exec(target);
  if (!match) return undefined;
  const host = canonicalHost(match[1] as string);
  const port = Number(match[2]);
  if (!host || port < 1 || port > 65535) return undefined;
  return { host, port };
}

function parseAbsoluteForm(target: string): RequestTarget {
  let url: URL | undefined;
  try {
    url = /^[a-z][a-z0-9+.-]*:\/\//i.test(target) ? new URL(target) : undefined;
  } catch {
    url = undefined;
  }
  if (!url)
    return {
      form: 'invalid',
      reason: 'this is a forward proxy: send CONNECT host:port or an absolute-form http:// request',
    };
  if (url.protocol !== 'http:')
    return {
      form: 'invalid',
      reason: `absolute-form ${url.protocol}// is not supported; use CONNECT for TLS destinations`,
    };
  const host = canonicalHost(url.hostname);
  if (!host)
    return { form: 'invalid', reason: `host ${JSON.stringify(url.hostname)} is not a valid host name or IP address` };
  const port = url.port ? Number(url.port) : 80;
  return { form: 'absolute', host, port, hostHeader: url.host, path: `${url.pathname}${url.search}`, url };
}

/**
 * The request target of one proxy request: CONNECT takes authority-form only, every other method
 * absolute-form `http://` only (origin-form means the client took the gateway for an origin).
 */
export function parseRequestTarget(method: string, target: string | undefined): RequestTarget {
  if (method.toUpperCase() !== 'CONNECT') return parseAbsoluteForm(target ?? '');
  const authority = parseAuthority(target);
  if (authority) return { form: 'authority', ...authority };
  return { form: 'invalid', reason: `CONNECT target must be host:port, got ${JSON.stringify(target?.slice(0, 100))}` };
}

/**
 * A request target as audit records show it: no credentials (`user:pass@`), at most 2048
 * characters, because records are queued for SIEMs and must not carry secrets or grow unbounded.
 */
export function auditUrl(target: URL | string | undefined): string {
  const text = typeof target === 'string' || target === undefined ? (target ?? '') : target.href;
  return text.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/?#@]*@/i, '$1').slice(0, 2048);
}
