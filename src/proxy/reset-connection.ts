import type { Socket } from 'node:net';

/** Sends a TCP RST, like an F5 iRule `reject`. Must be called on the raw socket: TLSSocket throws. */
export function resetConnection(raw: Socket): void {
  if (raw.destroyed) return;
  try {
    raw.resetAndDestroy();
  } catch {
    raw.destroy();
  }
}
