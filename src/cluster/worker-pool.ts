import cluster, { type Worker } from 'node:cluster';
import { ERROR_CODES, type ErrorCode, GatewayError } from '../core/errors.ts';
import { newTicketSecret, TICKET_SECRET_ENV } from '../tls/ticket-keys.ts';
import { type AdminOperation, type AdminReply, CONFIG_SNAPSHOT_ENV, isAdminReply, isWorkerReady } from './admin-ipc.ts';

const ASK_TIMEOUT_MS = 5_000;
/** Replacement workers back off exponentially, so a worker that dies at once cannot spin the CPU. */
const RESTART_BACKOFF_MAX_MS = 30_000;
const STABLE_AFTER_MS = 60_000;

interface Waiter {
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: Error) => void;
  readonly timer: NodeJS.Timeout;
}

/** A worker's error keeps its code, so the admin API answers the same as a single process. */
function replyError(error: NonNullable<AdminReply['error']>): Error {
  return error.code && error.code in ERROR_CODES
    ? new GatewayError(error.code as ErrorCode, error.message)
    : new Error(error.message);
}

/**
 * The primary's workers: forks them from the last good configuration text, asks them admin
 * questions over IPC, tracks which serve (every listener bound) and replaces the ones that die.
 */
export class WorkerPool {
  /** Workers start from this text (validated at start or by the last good reload), never from the file. */
  configText: string;
  readonly #size: number;
  readonly #log: (message: string) => void;
  readonly #pending = new Map<number, Waiter>();
  readonly #serving = new Set<number>();
  #nextId = 1;
  #started = false;
  #stopping = false;
  #crashes = 0;
  /** One per primary: every worker derives the same rotating session-ticket keys from it. */
  readonly #ticketSecret = newTicketSecret();
  #lastCrashAt = 0;
  #onAllServe: (() => void) | undefined;

  constructor(options: { size: number; configText: string; log: (m: string) => void }) {
    this.#size = options.size;
    this.configText = options.configText;
    this.#log = options.log;
  }

  get size(): number {
    return this.#size;
  }

  get stopping(): boolean {
    return this.#stopping;
  }

  /** Connected workers. */
  live(): Worker[] {
    return Object.values(cluster.workers ?? {}).filter((w): w is Worker => w?.isConnected() === true);
  }

  /** Workers that said they serve (every listener bound, start-up checks passed, IPC answering). */
  serving(): Worker[] {
    return this.live().filter((w) => this.#serving.has(w.id));
  }

  /** Forks every worker; resolves once all serve, rejects if one exits before. */
  async start(): Promise<void> {
    const online = this.#whenAllServe();
    cluster.on('exit', (worker, code, signal) => this.#replace(worker, code, signal));
    for (let i = 0; i < this.#size; i++) this.#fork();
    try {
      await online;
    } catch (error) {
      this.stopAll();
      throw error;
    }
  }

  ask(worker: Worker, op: AdminOperation, args?: unknown, timeoutMs = ASK_TIMEOUT_MS): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const id = this.#nextId++;
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`worker ${worker.process.pid} did not answer ${op} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, { resolve, reject, timer });
      worker.send({ type: 'egw-admin', id, op, args });
    });
  }

  askAll(op: AdminOperation, args?: unknown): Promise<Array<{ pid: number | undefined; result: unknown }>> {
    return Promise.all(this.live().map(async (w) => ({ pid: w.process.pid, result: await this.ask(w, op, args) })));
  }

  /** Sends SIGTERM to every worker (each drains, then exits); resolves when all have exited. */
  stopAll(): Promise<unknown> {
    this.#stopping = true;
    const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined);
    const exits = workers.map((w) => new Promise((r) => (w.isDead() ? r(null) : w.once('exit', r))));
    for (const worker of workers) worker.process.kill('SIGTERM');
    return Promise.all(exits);
  }

  #fork(): Worker {
    const worker = cluster.fork({
      [CONFIG_SNAPSHOT_ENV]: Buffer.from(this.configText).toString('base64'),
      [TICKET_SECRET_ENV]: this.#ticketSecret,
    });
    worker.on('message', (message: unknown) => {
      if (isWorkerReady(message)) return this.#ready(worker);
      if (!isAdminReply(message)) return;
      const waiter = this.#pending.get(message.id);
      if (!waiter) return;
      this.#pending.delete(message.id);
      clearTimeout(waiter.timer);
      if (message.error) waiter.reject(replyError(message.error));
      else waiter.resolve(message.result);
    });
    return worker;
  }

  #ready(worker: Worker): void {
    this.#serving.add(worker.id);
    if (!this.#started && this.#serving.size === this.#size) {
      this.#started = true;
      this.#onAllServe?.();
    }
  }

  #whenAllServe(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#onAllServe = resolve;
      cluster.on('exit', (worker, code, signal) => {
        if (!this.#started)
          reject(
            new GatewayError(
              'EGW_LISTEN_FAILED',
              `worker ${worker.process.pid} exited during start-up (${signal ?? code}); see its output above`,
            ),
          );
      });
    });
  }

  #replace(worker: Worker, code: number, signal: string): void {
    this.#serving.delete(worker.id);
    if (this.#stopping || !this.#started) return;
    if (Date.now() - this.#lastCrashAt > STABLE_AFTER_MS) this.#crashes = 0;
    this.#lastCrashAt = Date.now();
    const delay = Math.min(RESTART_BACKOFF_MAX_MS, 250 * 2 ** this.#crashes);
    this.#crashes += 1;
    this.#log(`worker ${worker.process.pid} exited (${signal ?? code}); starting a replacement in ${delay} ms`);
    setTimeout(() => {
      if (!this.#stopping) this.#fork();
    }, delay).unref();
  }
}
