import { spawn } from 'node:child_process';

export interface SClientResult {
  /** Everything s_client printed (session summary on stdout, handshake trace on stderr). */
  readonly output: string;
  readonly code: number | null;
  /** True when `until` was seen before the deadline. */
  readonly matched: boolean;
  /** The negotiated ALPN protocol, `null` for "No ALPN negotiated", undefined when no handshake. */
  readonly alpn: string | null | undefined;
  readonly protocol: string | undefined;
  readonly verifyReturnCode: string | undefined;
}

/**
 * Runs a real `openssl s_client`, writes `send` once the handshake summary is printed, and keeps
 * stdin open until `until` shows up (or the deadline passes): s_client quits on stdin EOF, and
 * closing early would race the reply. Stdin is then closed so s_client exits on its own.
 */
export function sClient(
  args: readonly string[],
  options: { send?: string; until?: RegExp; timeoutMs?: number } = {},
): Promise<SClientResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('openssl', ['s_client', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    let sent = false;
    let matched = false;
    const finish = () => {
      if (!child.stdin.destroyed) child.stdin.end();
    };
    const timer = setTimeout(() => {
      finish();
      setTimeout(() => child.kill('SIGKILL'), 2_000).unref();
    }, options.timeoutMs ?? 10_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString('utf8');
      // s_client prints "---" after the session summary; by then the handshake is complete.
      if (!sent && /Verify return code:|SSL handshake has read/.test(output)) {
        sent = true;
        if (options.send !== undefined) child.stdin.write(options.send);
        if (!options.until) finish();
      }
      if (!matched && options.until?.test(output)) {
        matched = true;
        finish();
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.stdin.on('error', () => {});
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      const alpnLine = /ALPN protocol: (\S+)|No ALPN negotiated/.exec(output);
      resolve({
        output,
        code,
        matched,
        alpn: alpnLine ? (alpnLine[1] ?? null) : undefined,
        protocol: /New, (TLSv[\d.]+),/.exec(output)?.[1] ?? /Protocol\s*:\s*(TLSv[\d.]+)/.exec(output)?.[1],
        verifyReturnCode: /Verify return code: (\d+)/.exec(output)?.[1],
      });
    });
  });
}
