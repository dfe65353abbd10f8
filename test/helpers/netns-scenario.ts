import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

const repo = new URL('../..', import.meta.url).pathname;

/** Why a network-namespace scenario cannot run here, or undefined (CI runs as root with iproute2). */
export function netnsSkipReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root for unshare -n (CI runs as root)';
  if (spawnSync('ip', ['-V']).status !== 0) return 'needs iproute2 (ip)';
  if (spawnSync('ss', ['-V']).status !== 0) return 'needs iproute2 (ss)';
  return undefined;
}

/**
 * Runs `scenario` (a .ts file under test/) inside a network namespace of its own (`unshare -n`)
 * after the shell lines of `setup` (lo up, addresses, sysctls of that namespace), and returns the
 * JSON of the last line it printed: the facts the test asserts on.
 */
export function runNetnsScenario<T>(setup: readonly string[], scenario: string): T {
  const script = ['set -e', 'ip link set lo up', ...setup, `exec node --import tsx ${scenario}`].join('\n');
  const run = spawnSync('unshare', ['-n', 'bash', '-c', script], { cwd: repo, encoding: 'utf8', timeout: 120_000 });
  assert.equal(run.status, 0, `scenario failed (${run.status} ${run.signal}):\n${run.stderr}\n${run.stdout}`);
  return JSON.parse(run.stdout.trim().split('\n').at(-1) ?? '') as T;
}
