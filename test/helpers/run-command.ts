import { spawn } from 'node:child_process';

export interface CommandResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a real client binary (curl, openssl, …) with a hard timeout; never rejects on exit status. */
export function runCommand(
  command: string,
  args: readonly string[],
  options: {
    input?: string | Buffer;
    timeoutMs?: number;
    env?: NodeJS.ProcessEnv;
    cwd?: string;
    /**
     * Ends the command (SIGTERM) once this holds, for clients such as `openssl s_client -ign_eof`
     * that only stop when killed: checked on each output chunk and every 50 ms, so state outside
     * the output (a file it writes) can decide too. `timeoutMs` still bounds it.
     */
    until?: (output: { stdout: string; stderr: string }) => boolean;
  } = {},
): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: options.env ?? process.env,
      cwd: options.cwd,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => {
      stdout += chunk;
    });
    child.stderr.on('data', (chunk) => {
      stderr += chunk;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 20_000);
    const { until } = options;
    const check = () => {
      if (until?.({ stdout, stderr }) && child.exitCode === null) child.kill('SIGTERM');
    };
    const poll = until ? setInterval(check, 50) : undefined;
    if (until) {
      child.stdout.on('data', check);
      child.stderr.on('data', check);
    }
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      clearInterval(poll);
      resolve({ code, signal, stdout, stderr });
    });
    child.stdin.on('error', () => {});
    if (options.input !== undefined) child.stdin.end(options.input);
    else child.stdin.end();
  });
}

/** The CLI as a user runs it: `node bin/egress-gateway.js …`. */
export function runCli(
  args: readonly string[],
  options: { timeoutMs?: number; cwd?: string } = {},
): Promise<CommandResult> {
  return runCommand(
    process.execPath,
    [new URL('../../bin/egress-gateway.js', import.meta.url).pathname, ...args],
    options,
  );
}
