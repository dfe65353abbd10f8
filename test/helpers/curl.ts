import { type CommandResult, runCommand } from './run-command.ts';
import type { WrittenLeaf } from './test-pki.ts';

/** curl through the gateway as an HTTPS proxy with a client certificate (`curl --proxy https://…`). */
export function curlViaGateway(
  port: number,
  client: WrittenLeaf | undefined,
  caPath: string,
  url: string,
  extra: readonly string[] = [],
  input?: Buffer | string,
): Promise<CommandResult> {
  const args = ['-sS', '--max-time', '10', '--proxy', `https://127.0.0.1:${port}`, '--proxy-cacert', caPath];
  if (client) args.push('--proxy-cert', client.certPath, '--proxy-key', client.keyPath);
  return runCommand('curl', [...args, ...extra, url], input === undefined ? {} : { input });
}
