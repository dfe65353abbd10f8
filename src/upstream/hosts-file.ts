import { readFile, stat } from 'node:fs/promises';
import { isIP } from 'node:net';

/** How often the file's mtime is checked at most: a lookup never waits on more than one stat. */
const RECHECK_MS = 2_000;
/** A hosts file is small; a bigger one is read up to this size (the rest is ignored). */
const MAX_BYTES = 1_048_576;

export interface HostsTable {
  /** The first address the file gives `name` (already canonical), or undefined. */
  lookup(name: string, family?: 4 | 6): Promise<string | undefined>;
}

/** Parses hosts(5): `address name [aliases…]`, `#` comments; first line for a name wins, as in glibc. */
export function parseHostsFile(text: string): Map<string, string[]> {
  const table = new Map<string, string[]>();
  for (const raw of text.slice(0, MAX_BYTES).split('\n')) {
    const [address, ...names] = (raw.split('#')[0] as string).trim().split(/\s+/);
    if (!address || isIP(address.split('%')[0] as string) === 0) continue;
    for (const name of names) {
      const key = name.toLowerCase().replace(/\.$/, '');
      const list = table.get(key) ?? [];
      if (!list.includes(address)) list.push(address);
      table.set(key, list);
    }
  }
  return table;
}

/**
 * /etc/hosts for a resolver that does not read it (c-ares queries DNS only): read once, reread
 * when its mtime or size changes (checked at most every 2 s), so `localhost` and names an
 * operator pins there keep resolving as getaddrinfo would. A missing file is an empty table.
 */
export function createHostsTable(path = '/etc/hosts', recheckMs = RECHECK_MS): HostsTable {
  let table = new Map<string, string[]>();
  let version = '';
  let checkedAt = Number.NEGATIVE_INFINITY;
  let pending: Promise<void> | undefined;
  const refresh = async (): Promise<void> => {
    try {
      const info = await stat(path);
      const next = `${info.mtimeMs}/${info.size}/${info.ino}`;
      if (next !== version) {
        table = parseHostsFile(await readFile(path, 'utf8'));
        version = next;
      }
    } catch {
      table = new Map();
      version = '';
    }
  };
  return {
    async lookup(name, family) {
      if (Date.now() - checkedAt >= recheckMs) {
        checkedAt = Date.now();
        pending ??= refresh().finally(() => {
          pending = undefined;
        });
      }
      if (pending) await pending;
      const addresses = table.get(name) ?? (name === 'localhost' ? ['127.0.0.1'] : undefined);
      return addresses?.find((a) => family === undefined || isIP(a) === family);
    },
  };
}
