import { type CommandResult, runCommand } from './run-command.ts';
import type { WrittenLeaf } from './test-pki.ts';

export interface SClientOptions {
  readonly client?: WrittenLeaf;
  readonly caPath: string;
  readonly servername?: string;
  readonly alpn?: string;
  readonly tlsVersion?: '1.2' | '1.3';
  readonly input?: string;
  /** Keep reading after stdin ends until the server closes (for request/response exchanges). */
  readonly waitForServerClose?: boolean;
}

/** Runs `openssl s_client` against 127.0.0.1:port, as a real TLS client would connect. */
export function sClient(port: number, options: SClientOptions): Promise<CommandResult> {
  const args = ['s_client', '-connect', `127.0.0.1:${port}`, '-CAfile', options.caPath, '-verify_return_error'];
  if (options.client) args.push('-cert', options.client.certPath, '-key', options.client.keyPath);
  if (options.servername) args.push('-servername', options.servername);
  else args.push('-noservername');
  if (options.alpn) args.push('-alpn', options.alpn);
  if (options.tlsVersion) args.push(options.tlsVersion === '1.2' ? '-tls1_2' : '-tls1_3');
  if (options.waitForServerClose) args.push('-ign_eof');
  return runCommand('openssl', args, { input: options.input ?? '', timeoutMs: 15_000 });
}
