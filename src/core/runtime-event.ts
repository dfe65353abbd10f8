import diagnosticsChannel from 'node:diagnostics_channel';
import type { PreHandshakeRefusal } from './audit-event.ts';

/**
 * Events for metrics that are not audit decisions (an audit record exists for every decision;
 * these count the work behind them). Published on a diagnostics_channel, like audit records, so
 * the data path never imports a metrics implementation.
 */
export type RuntimeEvent =
  | { readonly type: 'dns-lookup'; readonly outcome: 'resolved' | 'failed' | 'static' }
  /** A socket entered (+1) or left (-1) the listener's pre-handshake budget. */
  | { readonly type: 'prehandshake-sockets'; readonly listener: string; readonly delta: 1 | -1 }
  | { readonly type: 'prehandshake-refused'; readonly listener: string; readonly reason: PreHandshakeRefusal };

export const RUNTIME_CHANNEL_NAME = 'mesh-egress-gateway:runtime';
const channel = diagnosticsChannel.channel(RUNTIME_CHANNEL_NAME);

export function publishRuntimeEvent(event: RuntimeEvent): void {
  if (channel.hasSubscribers) channel.publish(event);
}

export function subscribeRuntimeEvents(listener: (event: RuntimeEvent) => void): () => void {
  const handler = (message: unknown) => listener(message as RuntimeEvent);
  channel.subscribe(handler);
  return () => channel.unsubscribe(handler);
}
