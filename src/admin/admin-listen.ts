import { splitHostPort } from '../config/listener-settings.ts';

/** `admin.listen` as a bind address (brackets of an IPv6 literal removed); undefined for "off". */
export function adminListenAddress(listen: string): { host: string; port: number } | undefined {
  return listen === 'off' ? undefined : splitHostPort(listen);
}
