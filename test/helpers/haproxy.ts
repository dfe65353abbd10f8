import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type DaemonProcess, startDaemon } from './daemon-process.ts';
import { waitForPort } from './loopback-ports.ts';

export interface Haproxy {
  readonly process: DaemonProcess;
  /** haproxy's stdout: its log lines (`log stdout format raw`), one per connection. */
  log(): string;
  stop(): Promise<void>;
}

/**
 * Debian's haproxy in the foreground (`-db`), unprivileged, logging to stdout. `sections` are the
 * frontends/backends; `ports` are the loopback ports they bind, waited for before returning.
 */
export async function startHaproxy(sections: string, ports: readonly number[]): Promise<Haproxy> {
  const dir = mkdtempSync(join(tmpdir(), 'egw-haproxy-'));
  const confPath = join(dir, 'haproxy.cfg');
  writeFileSync(
    confPath,
    [
      'global',
      '  log stdout format raw local0',
      'defaults',
      '  mode tcp',
      '  log global',
      '  timeout connect 5s',
      '  timeout client 30s',
      '  timeout server 30s',
      sections,
      '',
    ].join('\n'),
  );
  const process = startDaemon('haproxy', ['-db', '-f', confPath]);
  try {
    for (const port of ports) await waitForPort(port);
  } catch (error) {
    await process.stop();
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`haproxy did not start: ${(error as Error).message}\n${process.output()}`);
  }
  return {
    process,
    log: () => process.output(),
    stop: async () => {
      await process.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
