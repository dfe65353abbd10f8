import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type DaemonProcess, startDaemon } from '../../helpers/daemon-process.ts';
import { freePort, waitForPort } from '../../helpers/loopback-ports.ts';

export interface StunnelClient {
  readonly port: number;
  readonly process: DaemonProcess;
  stop(): Promise<void>;
}

/**
 * Debian's stunnel4 as a client-side sidecar: plain TCP on 127.0.0.1:<port>, mTLS to the gateway
 * with the workload's chain, the mesh root as CAfile and Istio's SNI. stunnel 5.68 has no ALPN
 * option, so this sidecar offers no ALPN (the Istio ALPN offer is covered by s_client and the
 * Node sidecar). `verifyChain` checks the gateway chain against the mesh root only: stunnel
 * cannot match a URI SAN (checkHost/checkIP/checkEmail only).
 */
export async function startStunnelClient(
  dir: string,
  name: string,
  options: {
    connect: string;
    certPath: string;
    keyPath: string;
    caPath: string;
    sni: string;
    maxVersion?: 'TLSv1.2' | 'TLSv1.3';
  },
): Promise<StunnelClient> {
  const port = await freePort();
  const confPath = join(dir, `stunnel-${name}.conf`);
  writeFileSync(
    confPath,
    [
      'foreground = yes',
      'pid =',
      'debug = info',
      `[${name}]`,
      'client = yes',
      `accept = 127.0.0.1:${port}`,
      `connect = ${options.connect}`,
      `cert = ${options.certPath}`,
      `key = ${options.keyPath}`,
      `CAfile = ${options.caPath}`,
      'verifyChain = yes',
      `sni = ${options.sni}`,
      'sslVersionMin = TLSv1.2',
      `sslVersionMax = ${options.maxVersion ?? 'TLSv1.3'}`,
      '',
    ].join('\n'),
  );
  const process = startDaemon('stunnel', [confPath]);
  try {
    await waitForPort(port);
  } catch (error) {
    await process.stop();
    throw new Error(`stunnel did not start: ${(error as Error).message}\n${process.output()}`);
  }
  return { port, process, stop: () => process.stop() };
}
