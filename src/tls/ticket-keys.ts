import { createHash, hkdfSync, randomBytes } from 'node:crypto';
import type { SecureContext } from 'node:tls';

/** Environment variable through which a cluster primary hands its workers the ticket secret. */
export const TICKET_SECRET_ENV = 'EGW_TICKET_SECRET';
/** A ticket key lives this long as the current key, then as long again as the previous one. */
export const DEFAULT_TICKET_ROTATION_MS = 60 * 60 * 1000;

interface TicketKey {
  readonly epoch: number;
  readonly name: Buffer;
  readonly hmac: Buffer;
  readonly aes: Buffer;
}

/** What Node's internal onticketkeycallback returns: [result, hmacKey, aesKey, name?, iv?]. */
type TicketKeyAnswer = [number, Buffer, Buffer] | [number, Buffer, Buffer, Buffer, Buffer];

interface TicketKeyHandle {
  enableTicketKeyCallback(): void;
  onticketkeycallback: (name: Buffer, iv: Buffer, encrypt: boolean) => TicketKeyAnswer;
}

const ZERO = Buffer.alloc(16);
/** Ticket IVs are cut from one random block: a randomBytes call per ticket cost more than the rest of the callback. */
const IVS_PER_BLOCK = 256;
let ivBlock = Buffer.alloc(0);
let ivOffset = 0;

/** 16 fresh random bytes, each used for one ticket only (OpenSSL copies them). */
function nextIv(): Buffer {
  if (ivOffset + 16 > ivBlock.length) {
    ivBlock = randomBytes(16 * IVS_PER_BLOCK);
    ivOffset = 0;
  }
  ivOffset += 16;
  return ivBlock.subarray(ivOffset - 16, ivOffset);
}

/**
 * Session-ticket keys that rotate by the clock and are the same in every process holding the same
 * secret: each epoch's 48-byte key (name, HMAC, AES) is HKDF(secret, epoch), so the workers of one
 * cluster agree without talking to each other after the primary handed out the secret. New tickets
 * are sealed with the current epoch's key; a ticket sealed with the previous epoch's key is still
 * opened and then renewed (OpenSSL result 2), anything older gets a full handshake.
 * Node's public `ticketKeys` option holds one key only, so no previous key could be accepted; the
 * per-context key callback (the one Node's own tests use) is the only way to keep two.
 */
export class TicketKeyRing {
  readonly #secret: Buffer;
  readonly #rotationMs: number;
  readonly #now: () => number;
  #keys: TicketKey[] = [];

  constructor(options: { secret?: Buffer; rotationMs?: number; now?: () => number } = {}) {
    this.#secret = options.secret ?? randomBytes(32);
    this.#rotationMs = options.rotationMs ?? DEFAULT_TICKET_ROTATION_MS;
    this.#now = options.now ?? Date.now;
  }

  /** Ticket lifetime in seconds for OpenSSL's session timeout: one rotation period. */
  get lifetimeSeconds(): number {
    return Math.max(1, Math.floor(this.#rotationMs / 1000));
  }

  /** Routes the context's ticket encryption and decryption through this ring. */
  install(context: SecureContext): void {
    const handle = (context as unknown as { context: TicketKeyHandle }).context;
    handle.enableTicketKeyCallback();
    handle.onticketkeycallback = (name, _iv, encrypt) => this.#answer(name, encrypt);
  }

  #answer(name: Buffer, encrypt: boolean): TicketKeyAnswer {
    const [current, previous] = this.#current();
    if (encrypt) return [1, current.hmac, current.aes, current.name, nextIv()];
    if (name.equals(current.name)) return [1, current.hmac, current.aes];
    if (name.equals(previous.name)) return [2, previous.hmac, previous.aes];
    // 0: not ours or too old; OpenSSL falls back to a full handshake.
    return [0, ZERO, ZERO];
  }

  /** [current, previous]; derived once per epoch, not per handshake. */
  #current(): [TicketKey, TicketKey] {
    const epoch = Math.floor(this.#now() / this.#rotationMs);
    if (this.#keys[0]?.epoch !== epoch) this.#keys = [this.#derive(epoch), this.#derive(epoch - 1)];
    return this.#keys as [TicketKey, TicketKey];
  }

  #derive(epoch: number): TicketKey {
    const bytes = Buffer.from(hkdfSync('sha256', this.#secret, '', `egw session ticket key ${epoch}`, 48));
    return { epoch, name: bytes.subarray(0, 16), hmac: bytes.subarray(16, 32), aes: bytes.subarray(32, 48) };
  }
}

let processRing: TicketKeyRing | undefined;

/**
 * This process's ring: from the secret a cluster primary passed in TICKET_SECRET_ENV (hex), or a
 * fresh random secret for a single process. The variable is removed once read, so nothing this
 * process spawns inherits it.
 */
export function processTicketKeys(): TicketKeyRing {
  if (processRing) return processRing;
  const hex = process.env[TICKET_SECRET_ENV];
  delete process.env[TICKET_SECRET_ENV];
  processRing = new TicketKeyRing(hex && /^[0-9a-f]{64}$/.test(hex) ? { secret: Buffer.from(hex, 'hex') } : {});
  return processRing;
}

/** A fresh secret for a cluster primary to hand to every worker it forks. */
export function newTicketSecret(): string {
  return randomBytes(32).toString('hex');
}

/**
 * OpenSSL resumes a session only into a context with the same session id context (and requires
 * one at all when client certificates are requested). Deriving it from the trust anchors means a
 * session minted before an anchor rotation never resumes: the client gets a full handshake and its
 * chain is judged against the new anchors.
 */
export function sessionIdContextFor(anchorsPem: string): string {
  return createHash('sha256').update(anchorsPem).digest('hex').slice(0, 32);
}
