import { createSocket } from 'node:dgram';
import { isIP } from 'node:net';
import { GatewayError } from '../core/errors.ts';

/**
 * Proves at start-up and on every reload that the SNAT address belongs to this host, by binding a
 * throw-away UDP socket to it. A typo in `snat` is then a start-up error, not a 502 on the first
 * connection. UDP, not a TCP listener: a TCP bind to port 0 fails with EADDRINUSE once a busy
 * gateway has every ephemeral port of the address in TIME_WAIT (snat-ports.ts), which says
 * nothing about whether the address is ours and would refuse a reload under load.
 */
export function checkSnatAddress(address: string, where: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const probe = createSocket(isIP(address) === 6 ? 'udp6' : 'udp4');
    probe.once('error', (error: NodeJS.ErrnoException) => {
      probe.close();
      reject(
        new GatewayError(
          'EGW_SNAT_UNBINDABLE',
          `${where}: SNAT address ${address} is not bindable on this host (${error.code ?? error.message})`,
          { cause: error },
        ),
      );
    });
    probe.bind({ address, port: 0, exclusive: true }, () => probe.close(() => resolve()));
  });
}
