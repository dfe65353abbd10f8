import { readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { GatewayError } from '../../core/errors.ts';

export interface TlsFilePaths {
  readonly ca?: string | undefined;
  readonly cert?: string | undefined;
  readonly key?: string | undefined;
}

export interface TlsMaterial {
  readonly ca?: Buffer;
  readonly cert?: Buffer;
  readonly key?: Buffer;
}

/** Relative paths in sink config resolve against the working directory, like the rest of the config. */
export function resolvePath(path: string): string {
  return isAbsolute(path) ? path : resolve(process.cwd(), path);
}

/**
 * Reads a sink's CA / client certificate / key. Called at build time (a missing file is a
 * configuration error and stops start-up) and again before each reconnect, so a rotated
 * client certificate is picked up without a restart.
 */
export function readTlsMaterial(sink: string, paths: TlsFilePaths): TlsMaterial {
  const read = (key: 'ca' | 'cert' | 'key') => {
    const path = paths[key];
    if (path === undefined) return {};
    try {
      return { [key]: readFileSync(resolvePath(path)) };
    } catch (cause) {
      throw new GatewayError(
        'EGW_AUDIT_SINK_INVALID',
        `audit sink ${sink}: ${key} ${path}: ${(cause as Error).message}`,
        { cause },
      );
    }
  };
  return { ...read('ca'), ...read('cert'), ...read('key') };
}
