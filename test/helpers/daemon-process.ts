import { type ChildProcess, spawn } from 'node:child_process';

export interface DaemonProcess {
  readonly child: ChildProcess;
  /** stdout + stderr so far. */
  output(): string;
  stop(): Promise<void>;
}

/**
 * Starts a foreground daemon (tinyproxy -d, stunnel with `foreground = yes`) owned by the test:
 * output is captured for assertions and failure messages, and `stop` ends exactly this process.
 */
export function startDaemon(command: string, args: readonly string[]): DaemonProcess {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let text = '';
  child.stdout?.on('data', (chunk) => {
    text += chunk;
  });
  child.stderr?.on('data', (chunk) => {
    text += chunk;
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    child,
    output: () => text,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 3_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
