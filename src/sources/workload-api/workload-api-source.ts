import {
  type Client,
  type ClientReadableStream,
  credentials,
  Metadata,
  type ServiceError,
  status,
} from '@grpc/grpc-js';
import { backoffDelay } from '../../audit/sinks/backoff.ts';
import { isGatewayError } from '../../core/errors.ts';
import type { IdentityMaterial } from '../identity-material.ts';
import {
  WORKLOAD_API_HEADER,
  workloadApiClientConstructor,
  type X509BundlesResponse,
  type X509SvidResponse,
} from './workload-api-proto.ts';
import {
  assembleMaterial,
  type BundleMap,
  parseBundlesResponse,
  parseSvidResponse,
  type SvidUpdate,
} from './x509-context.ts';

export interface WorkloadApiSourceOptions {
  /** `unix:///absolute/path.sock`, as grpc-js and SPIRE write it. */
  readonly socket: string;
  /** identity.trustDomain: the SVID must be in it, and its bundle is the one peers are verified with. */
  readonly trustDomain: string;
  readonly log: (message: string) => void;
  /** Re-dial delay bounds (exponential, equal jitter). Default 500 ms to 30 s. */
  readonly backoff?: { readonly minMs: number; readonly maxMs: number };
}

export interface WorkloadApiStatus {
  /** True while both streams are open and the last message on each was taken. */
  readonly connected: boolean;
  readonly hasIdentity: boolean;
  /** The last reason the agent was unreachable or a message was refused, if any. */
  readonly problem?: string;
  readonly updates: number;
  readonly refused: number;
  readonly redials: number;
}

// A Workload API message is a few certificates; 4 MiB (grpc-js's default, stated) bounds a broken agent.
const MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

/**
 * Streams the gateway's X.509-SVID (FetchX509SVID) and trust bundles, federated ones included
 * (FetchX509Bundles), from a SPIFFE Workload API agent. Each accepted change is offered to
 * `onUpdate` listeners as complete identity material; a refused message is logged and the last
 * good material kept. When the agent goes away the material stays and the agent is re-dialled
 * with bounded, jittered backoff, so a restarting agent never takes the gateway's identity down.
 */
export class WorkloadApiSource {
  readonly #options: WorkloadApiSourceOptions;
  readonly #listeners = new Set<(material: IdentityMaterial) => void>();
  #svid: SvidUpdate | undefined;
  #material: IdentityMaterial | undefined;
  #client: Client | undefined;
  #calls: ClientReadableStream<unknown>[] = [];
  #open = { svid: false, bundles: false };
  #bundlesUnsupported = false;
  #attempt = 0;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  #problem: string | undefined;
  #counts = { updates: 0, refused: 0, redials: 0 };
  readonly #closeWaiters = new Set<() => void>();

  constructor(options: WorkloadApiSourceOptions) {
    this.#options = options;
  }

  get source(): string {
    return `Workload API ${this.#options.socket}`;
  }

  start(): this {
    this.#dial();
    return this;
  }

  current(): IdentityMaterial | undefined {
    return this.#material;
  }

  /** Called with each new material; returns the unsubscribe function. */
  onUpdate(listener: (material: IdentityMaterial) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Resolves with the first accepted material (at once if there is one); rejects if closed first. */
  firstMaterial(): Promise<IdentityMaterial> {
    if (this.#material) return Promise.resolve(this.#material);
    if (this.#closed) return Promise.reject(new Error(`${this.source}: closed before the first SVID`));
    return new Promise((resolve, reject) => {
      const off = this.onUpdate((material) => {
        off();
        resolve(material);
      });
      this.#closeWaiters.add(() => reject(new Error(`${this.source}: closed before the first SVID`)));
    });
  }

  status(): WorkloadApiStatus {
    return Object.freeze({
      connected: this.#open.svid && (this.#open.bundles || this.#bundlesUnsupported),
      hasIdentity: this.#material !== undefined,
      ...(this.#problem === undefined ? {} : { problem: this.#problem }),
      ...this.#counts,
    });
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#teardown();
    for (const waiter of this.#closeWaiters) waiter();
    this.#closeWaiters.clear();
  }

  #dial(): void {
    const Ctor = workloadApiClientConstructor();
    const client = new Ctor(this.#options.socket, credentials.createInsecure(), {
      'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
      // Our own backoff decides when to re-dial; the channel must not add minutes of its own.
      'grpc.initial_reconnect_backoff_ms': 200,
      'grpc.max_reconnect_backoff_ms': 1000,
    });
    this.#client = client;
    const metadata = new Metadata();
    metadata.set(WORKLOAD_API_HEADER, 'true');
    this.#watch(openStream(client, 'FetchX509SVID', metadata), 'svid', (message) =>
      this.#onSvid(message as X509SvidResponse),
    );
    if (!this.#bundlesUnsupported)
      this.#watch(openStream(client, 'FetchX509Bundles', metadata), 'bundles', (message) =>
        this.#onBundles(message as X509BundlesResponse),
      );
  }

  #watch(call: ClientReadableStream<unknown>, which: 'svid' | 'bundles', onData: (message: unknown) => void): void {
    this.#calls.push(call);
    call.on('data', (message: unknown) => {
      if (!this.#calls.includes(call)) return;
      this.#open[which] = true;
      onData(message);
    });
    call.on('error', (error: ServiceError) => this.#streamEnded(call, which, error));
    call.on('end', () => this.#streamEnded(call, which, undefined));
  }

  #streamEnded(call: ClientReadableStream<unknown>, which: 'svid' | 'bundles', error: ServiceError | undefined) {
    if (this.#closed || !this.#calls.includes(call)) return;
    if (which === 'bundles' && error?.code === status.UNIMPLEMENTED) {
      // An agent older than FetchX509Bundles: the SVID stream's bundles are all there is.
      this.#bundlesUnsupported = true;
      this.#calls = this.#calls.filter((c) => c !== call);
      this.#options.log(`${this.source}: FetchX509Bundles is not implemented; using the bundles sent with the SVID`);
      return;
    }
    const why = error ? `${status[error.code] ?? error.code}: ${error.details || error.message}` : 'stream ended';
    this.#problem = `EGW_WORKLOAD_API_UNAVAILABLE: ${this.source}: ${which === 'svid' ? 'FetchX509SVID' : 'FetchX509Bundles'} ${why}`;
    this.#teardown();
    this.#attempt += 1;
    this.#counts.redials += 1;
    const { minMs, maxMs } = this.#options.backoff ?? { minMs: 500, maxMs: 30_000 };
    const delay = backoffDelay(this.#attempt, minMs, maxMs);
    this.#options.log(
      `${this.#problem}; ${this.#material ? 'keeping the last good identity' : 'no SVID yet'}, re-dialling in ${delay} ms`,
    );
    this.#timer = setTimeout(() => this.#dial(), delay);
    this.#timer.unref();
  }

  #teardown(): void {
    const calls = this.#calls;
    this.#calls = [];
    this.#open = { svid: false, bundles: false };
    for (const call of calls) call.cancel();
    this.#client?.close();
    this.#client = undefined;
  }

  #onSvid(message: X509SvidResponse): void {
    this.#take('X509SVIDResponse', () => {
      const svid = parseSvidResponse(message, this.#options.trustDomain);
      // Every message carries the full set (Workload API §5.1): the latest one's bundles win.
      return { svid, bundles: svid.bundles };
    });
  }

  #onBundles(message: X509BundlesResponse): void {
    this.#take('X509BundlesResponse', () => ({
      svid: this.#svid,
      bundles: parseBundlesResponse(message, this.#options.trustDomain),
    }));
  }

  /** Parses, assembles and publishes; any refusal keeps the last good material and is logged. */
  #take(what: string, parse: () => { svid: SvidUpdate | undefined; bundles: BundleMap }): void {
    let next: { svid: SvidUpdate | undefined; bundles: BundleMap };
    let material: IdentityMaterial | undefined;
    try {
      next = parse();
      if (next.svid) material = assembleMaterial(next.svid, next.bundles, this.#options.trustDomain, this.source);
    } catch (error) {
      if (!isGatewayError(error)) throw error;
      this.#counts.refused += 1;
      this.#problem = `${error.code}: ${this.source}: ${what} refused: ${error.message}`;
      this.#options.log(`${this.#problem}; ${this.#material ? 'keeping the last good identity' : 'no SVID yet'}`);
      return;
    }
    this.#attempt = 0;
    this.#svid = next.svid;
    if (!material || sameMaterial(material, this.#material)) return;
    this.#material = material;
    this.#counts.updates += 1;
    const leaf = next.svid?.chain[0];
    this.#options.log(
      `${this.source}: SVID ${next.svid?.spiffeId} serial ${leaf?.serialNumber} (until ${leaf?.validTo}), ` +
        `${(next.bundles.get(this.#options.trustDomain) ?? []).length} trust anchors, ${material.federatedBundles.size} federated bundles`,
    );
    for (const listener of [...this.#listeners]) listener(material);
  }
}

type StreamMethod = (request: object, metadata: Metadata) => ClientReadableStream<unknown>;

/** Starts a server-streaming call on a client generated from the proto (its methods are not typed). */
function openStream(client: Client, method: 'FetchX509SVID' | 'FetchX509Bundles', metadata: Metadata) {
  return ((client as unknown as Record<string, StreamMethod>)[method] as StreamMethod).call(client, {}, metadata);
}

function sameMaterial(a: IdentityMaterial, b: IdentityMaterial | undefined): boolean {
  if (!b || a.certPem !== b.certPem || a.anchorsPem !== b.anchorsPem || a.keyPem !== b.keyPem) return false;
  if (a.federatedBundles.size !== b.federatedBundles.size) return false;
  for (const [domain, certs] of a.federatedBundles) {
    const other = b.federatedBundles.get(domain);
    if (!other || other.length !== certs.length || certs.some((c, i) => c.fingerprint256 !== other[i]?.fingerprint256))
      return false;
  }
  return true;
}
