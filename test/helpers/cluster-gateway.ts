import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { adminPortOf } from './loopback-ports.ts';
import { waitUntil } from './poll-until.ts';

const repo = new URL('../..', import.meta.url).pathname;

/** `egress-gateway serve --workers N` running as a child process of the test. */
export interface ClusterGateway {
  readonly child: ChildProcess;
  /** Everything the primary and its workers wrote to stderr so far. */
  stderr(): string;
  /** The port the primary's admin API bound (configs say `admin.listen: 127.0.0.1:0`). */
  readonly adminPort: number;
  /** SIGTERM (SIGKILL after 20 s), then waits for the exit; nothing when it has exited already. */
  stop(): Promise<void>;
}

/**
 * Starts the built CLI with `--workers` and resolves once the primary logs "N workers serving"
 * (every worker bound its listeners). If it exits first or 30 s pass, it is killed and this
 * rejects with its stderr; otherwise the caller stops it.
 */
export async function startClusterGateway(configPath: string, workers = 2): Promise<ClusterGateway> {
  const child = spawn(
    process.execPath,
    [join(repo, 'bin/egress-gateway.js'), 'serve', '--config', configPath, '--workers', String(workers)],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (chunk) => {
    stderr += chunk;
  });
  const serving = new RegExp(`${workers} workers serving`);
  try {
    await waitUntil(
      () => {
        if (child.exitCode !== null) throw new Error(`cluster exited with ${child.exitCode}: ${stderr}`);
        return serving.test(stderr);
      },
      30_000,
      () => `the cluster to start: ${stderr}`,
      100,
    );
    return { child, stderr: () => stderr, adminPort: adminPortOf(stderr), stop: () => stop(child) };
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  }
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  await exited;
  clearTimeout(timer);
}
