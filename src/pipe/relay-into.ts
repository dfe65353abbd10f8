import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { TLSSocket } from 'node:tls';

/*
 * Why the tunnel does not simply `pipe()`: Node reads every chunk into a new Buffer (one per TLS
 * record, up to 64 KiB per TCP read), each its own ArrayBuffer backing store. V8 starts a full
 * mark-compact each time ~64 MB of backing stores has been allocated since the last one, so a
 * bulk relay runs a major GC about every 60 MB, and each costs in proportion to the gateway's
 * whole live heap (several times the bare relay's). Reading into buffers the tunnel owns and
 * reuses allocates nothing per chunk: no major GC during a relay (docs/benchmarks.md).
 *
 * net.Socket's public `onread: { buffer, callback }` option does exactly that, but an accepted
 * TLSSocket cannot take it (tls.TLSSocket passes `onread` on only when it creates the socket), and
 * the upstream is dialled before the tunnel exists. Node keeps that option in three symbol slots
 * on every net.Socket (TLSSocket included) and hands the buffer to the handle with
 * `useUserBuffer()`; the tunnel fills them the way the constructor would. When they are missing
 * (another Node, another kind of stream), the tunnel falls back to `pipe()`: slower, same bytes.
 */

interface Slots {
  readonly buffer: symbol;
  readonly callback: symbol;
  readonly generator: symbol;
}

type SlotHolder = Record<symbol, unknown>;
type UserBufferHandle = { useUserBuffer?: (buffer: Uint8Array) => void };

let slots: Slots | undefined;

function userBufferSlots(socket: Duplex): Slots | undefined {
  if (!slots) {
    const own = Object.getOwnPropertySymbols(socket);
    const find = (name: string) => own.find((s) => s.description === name);
    const [buffer, callback, generator] = [find('kBuffer'), find('kBufferCb'), find('kBufferGen')];
    if (!buffer || !callback || !generator) return undefined;
    slots = { buffer, callback, generator };
  }
  const holder = socket as unknown as SlotHolder;
  // null slots: a socket created without `onread`, not yet switched (a second switch would stack handlers).
  if (!(slots.buffer in holder) || holder[slots.buffer] !== null || holder[slots.callback] !== null) return undefined;
  const handle = (socket as unknown as { _handle?: UserBufferHandle | null })._handle;
  return typeof handle?.useUserBuffer === 'function' ? slots : undefined;
}

/** Every tunnel's first reads land here and are copied out (or encrypted at once): idle tunnels hold no buffer. */
const scratch = Buffer.allocUnsafeSlow(64 * 1024);
/** After this many bytes one way, that direction reads into a buffer of its own. */
const OWN_BUFFER_AFTER_BYTES = 256 * 1024;
/** OpenSSL hands over at most one record (16 KiB) per read; a TCP read fills up to 64 KiB. */
const TLS_READ_BYTES = 16 * 1024;
const TCP_READ_BYTES = 64 * 1024;

/** How many tunnel directions read into reused buffers, and how many fell back to `pipe()`. */
export const relayStats = { reusedBuffers: 0, piped: 0 };

/**
 * Forwards everything `from` reads to `to`, with `pipe()`'s semantics: `to.write()` returning
 * false pauses `from` until 'drain', the end of `from` ends `to`, and once `to` has closed nothing
 * more is forwarded.
 */
export function relayInto(from: Duplex, to: Duplex): void {
  const found = from.destroyed ? undefined : userBufferSlots(from);
  if (!found) {
    relayStats.piped += 1;
    from.pipe(to);
    return;
  }
  relayStats.reusedBuffers += 1;
  const forward = forwarder(from, to);
  // Bytes Node read before the switch come first (a parent proxy's put-back bytes, early client data).
  for (let chunk = from.read() as Buffer | null; chunk !== null; chunk = from.read() as Buffer | null) to.write(chunk);
  const holder = from as unknown as SlotHolder;
  holder[found.buffer] = scratch;
  holder[found.callback] = forward.onRead;
  holder[found.generator] = forward.nextBuffer;
  ((from as unknown as { _handle: UserBufferHandle })._handle.useUserBuffer as (b: Uint8Array) => void)(scratch);
  from.once('end', () => {
    if (!forward.stopped()) to.end();
  });
  to.once('close', forward.stop);
  from.resume();
}

function forwarder(from: Duplex, to: Duplex) {
  const ownSize = from instanceof TLSSocket ? TLS_READ_BYTES : TCP_READ_BYTES;
  // A TLSSocket's handle encrypts a write at once, or copies what it cannot encrypt yet, so a
  // write that reached it holds nothing. A TCP write the kernel did not take whole keeps pointing
  // into the buffer until it completes.
  const handleCopies = to instanceof TLSSocket;
  let relayed = 0;
  let own: Buffer | undefined;
  let next: Buffer = scratch;
  let stopped = false;
  let waitingForDrain = false;
  const onDrain = () => {
    waitingForDrain = false;
    if (!stopped) from.resume();
  };
  const onRead = (nread: number, buffer: Buffer): boolean => {
    if (stopped) return true;
    relayed += nread;
    const chunk = buffer.subarray(0, nread);
    // A write behind another one (or corked, or before connect) waits in the stream, holding the chunk.
    const queued = to.writableLength > 0 || to.writableCorked > 0 || (to as Partial<Socket>).connecting === true;
    let ok: boolean;
    if (queued || (buffer === scratch && !handleCopies)) ok = to.write(Buffer.from(chunk));
    else {
      ok = to.write(chunk);
      if (!handleCopies && to.writableLength > 0) own = undefined; // the kernel took part: that write keeps it
    }
    // Only a TCP destination needs a buffer of its own (a TLS one has encrypted or copied the chunk),
    // and only while reads come full: a short read means the source ran dry and the tunnel may now
    // sit idle for hours, so the buffer goes and the next read lands in the shared scratch again.
    if (handleCopies || nread < ownSize) own = undefined;
    else if (relayed >= OWN_BUFFER_AFTER_BYTES) own ??= Buffer.allocUnsafeSlow(ownSize);
    next = own ?? scratch;
    if (!ok && !waitingForDrain) {
      waitingForDrain = true;
      from.pause();
      to.once('drain', onDrain);
    }
    return true;
  };
  return {
    onRead,
    nextBuffer: () => next,
    // Like pipe() once its destination is gone: `from` goes on reading (what it reads is dropped)
    // so it still sees its peer's end and closes; stopping its reads would leave it open until
    // the linger gives up on it.
    stop: () => {
      stopped = true;
      waitingForDrain = false;
      from.resume();
    },
    stopped: () => stopped,
  };
}
