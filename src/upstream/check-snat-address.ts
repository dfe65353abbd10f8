import { createServer } from 'node:net';
import { GatewayError } from '../core/errors.ts';

/**
 * Proves at start-up that the SNAT address belongs to this host, by binding a throw-away socket
 * to it. A typo in `snat` is then a start-up error, not a 502 on the first connection.
 */
export function checkSnatAddress(address: string, where: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', (error: NodeJS.ErrnoException) => {
      reject(
        new GatewayError(
          'EGW_SNAT_UNBINDABLE',
          `${where}: SNAT address ${address} is not bindable on this host (${error.code ?? error.message})`,
          { cause: error },
        ),
      );
    });
    probe.listen({ host: address, port: 0, exclusive: true }, () => probe.close(() => resolve()));
  });
}
