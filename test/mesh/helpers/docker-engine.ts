import { type CommandResult, runCommand } from '../../helpers/run-command.ts';

/**
 * Whether a Docker engine answers here. CI sets EGW_REQUIRE_DOCKER=1, so there a missing engine
 * fails the run instead of skipping; elsewhere the container tests skip and say why.
 */
export async function dockerSkipReason(): Promise<string | undefined> {
  const info = await runCommand('docker', ['info', '--format', '{{.ServerVersion}}'], { timeoutMs: 20_000 }).catch(
    (error: Error) => ({ code: -1, stdout: '', stderr: error.message }),
  );
  if (info.code === 0) return undefined;
  const reason = `no Docker engine (docker info: ${info.stderr.trim().split('\n').at(-1)})`;
  if (process.env.EGW_REQUIRE_DOCKER === '1') throw new Error(`EGW_REQUIRE_DOCKER=1 but ${reason}`);
  return `${reason}; start dockerd or set EGW_REQUIRE_DOCKER=1 to make this a failure`;
}

/** `docker …` with a generous timeout (image builds on a busy machine); never rejects on exit status. */
export function docker(args: readonly string[], timeoutMs = 120_000, env?: NodeJS.ProcessEnv): Promise<CommandResult> {
  return runCommand('docker', args, { timeoutMs, env: { ...process.env, ...env } });
}

/** Like `docker`, but throws with the output when the command fails. */
export async function dockerOk(args: readonly string[], timeoutMs = 120_000, env?: NodeJS.ProcessEnv): Promise<string> {
  const result = await docker(args, timeoutMs, env);
  if (result.code !== 0) throw new Error(`docker ${args.join(' ')} exited ${result.code}:\n${result.stderr}`);
  return result.stdout;
}

/** The base image the Dockerfile builds on here: scripts/build-base-image.sh's tag unless overridden. */
export const BASE_IMAGE = process.env.EGW_BASE_IMAGE ?? 'mesh-egress-gateway-base:24';
