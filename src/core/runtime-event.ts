import diagnosticsChannel from 'node:diagnostics_channel';
import type { PreHandshakeRefusal } from './audit-event.ts';

/**
 * Events for metrics that are not audit decisions (an audit record exists for every decision;
 * these count the work behind them). Published on a diagnostics_channel, like audit records, so
 * the data path never imports a metrics implementation.
 */
export type RuntimeEvent =
  | {
      readonly type: 'dns-lookup';
      /** static/hosts/cached: answered without a query; busy: refused at a concurrency cap. */
      readonly outcome: 'resolved' | 'failed' | 'timeout' | 'busy' | 'static' | 'hosts' | 'cached';
    }
  /** A socket entered (+1) or left (-1) the listener's pre-handshake budget. */
  | { readonly type: 'prehandshake-sockets'; readonly listener: string; readonly delta: 1 | -1 }
  | { readonly type: 'prehandshake-refused'; readonly listener: string; readonly reason: PreHandshakeRefusal }
  /** A dial from this SNAT address failed with address or port exhaustion; the next one of the pool was tried. */
  | { readonly type: 'snat-failover'; readonly listener: string; readonly address: string };

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

/**
 * DNS queries really in flight (+1 when one is sent, -1 once c-ares has let go of it, whatever the
 * caller did meanwhile), on a channel of its own so lookup-outcome subscribers see outcomes only.
 */
const inflightChannel = diagnosticsChannel.channel('mesh-egress-gateway:dns-inflight');

export function publishDnsInflight(delta: 1 | -1): void {
  if (inflightChannel.hasSubscribers) inflightChannel.publish(delta);
}

export function subscribeDnsInflight(listener: (delta: number) => void): () => void {
  const handler = (message: unknown) => listener(message as number);
  inflightChannel.subscribe(handler);
  return () => inflightChannel.unsubscribe(handler);
}
