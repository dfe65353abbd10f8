import { createPrivateKey, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Server, ServerCredentials, type ServerWritableStream, status } from '@grpc/grpc-js';
import type { IssuedCertificate } from '../../../src/pki/issue-certificate.ts';
import {
  WORKLOAD_API_HEADER,
  workloadApiClientConstructor,
  type X509BundlesResponse,
  type X509SvidResponse,
} from '../../../src/sources/workload-api/workload-api-proto.ts';
import type { WrittenLeaf } from '../../helpers/test-pki.ts';

/**
 * A SPIFFE Workload API server of our own, implementing the vendored workload.proto over a unix
 * socket in a temp dir. SPIRE cannot be built here (no Go toolchain, no internet), so this is
 * the agent the gateway talks to: it streams whatever response a test pushes, to every open
 * call and to calls opened later, and can be stopped and started again on the same socket.
 */
export interface FakeWorkloadApi {
  /** `unix:///…/agent.sock`, as identity.workloadApi.socket takes it. */
  readonly socket: string;
  /** Calls refused for a missing `workload.spiffe.io: true` header, and calls accepted. */
  readonly calls: { accepted: number; refusedHeader: number };
  pushSvid(response: Partial<X509SvidResponse>): void;
  pushBundles(response: Partial<X509BundlesResponse>): void;
  /** Open FetchX509SVID streams right now. */
  openSvidStreams(): number;
  start(): Promise<void>;
  stop(): Promise<void>;
  cleanup(): Promise<void>;
}

type Stream = ServerWritableStream<object, unknown>;

export async function startFakeWorkloadApi(): Promise<FakeWorkloadApi> {
  const dir = mkdtempSync(join(tmpdir(), 'egw-agent-'));
  const path = join(dir, 'agent.sock');
  const socket = `unix://${path}`;
  const calls = { accepted: 0, refusedHeader: 0 };
  const open = { svid: new Set<Stream>(), bundles: new Set<Stream>() };
  const latest: { svid?: Partial<X509SvidResponse>; bundles?: Partial<X509BundlesResponse> } = {};
  let server: Server | undefined;

  const serve = (which: 'svid' | 'bundles') => (call: Stream) => {
    if (call.metadata.get(WORKLOAD_API_HEADER)[0] !== 'true') {
      calls.refusedHeader += 1;
      // What SPIRE answers: the security header is mandatory.
      call.emit('error', { code: status.INVALID_ARGUMENT, details: 'security header missing from request' });
      return;
    }
    calls.accepted += 1;
    open[which].add(call);
    call.on('cancelled', () => open[which].delete(call));
    call.on('close', () => open[which].delete(call));
    const message = latest[which];
    if (message) call.write(message);
  };

  async function start(): Promise<void> {
    rmSync(path, { force: true });
    const next = new Server();
    next.addService(workloadApiClientConstructor().service, {
      FetchX509SVID: serve('svid'),
      FetchX509Bundles: serve('bundles'),
    });
    await new Promise<void>((resolve, reject) =>
      next.bindAsync(socket, ServerCredentials.createInsecure(), (error) => (error ? reject(error) : resolve())),
    );
    server = next;
  }

  async function stop(): Promise<void> {
    for (const set of Object.values(open)) {
      for (const call of set) call.destroy();
      set.clear();
    }
    server?.forceShutdown();
    server = undefined;
  }

  await start();
  return {
    socket,
    calls,
    pushSvid(response) {
      latest.svid = response;
      for (const call of open.svid) call.write(response);
    },
    pushBundles(response) {
      latest.bundles = response;
      for (const call of open.bundles) call.write(response);
    },
    openSvidStreams: () => open.svid.size,
    start,
    stop,
    async cleanup() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const der = (pem: string) => new X509Certificate(pem).raw;

/** The X509SVID message SPIRE would send for a leaf written by test-pki (chain: leaf + intermediate). */
export function svidMessage(
  leaf: WrittenLeaf,
  bundle: readonly IssuedCertificate[],
  options: { spiffeId?: string; keyFrom?: WrittenLeaf } = {},
): X509SvidResponse['svids'][number] {
  const chainPems = readFileSync(leaf.certPath, 'utf8').match(
    /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g,
  );
  const key = createPrivateKey(readFileSync((options.keyFrom ?? leaf).keyPath, 'utf8'));
  return {
    spiffe_id:
      options.spiffeId ??
      (new X509Certificate(leaf.leaf.certPem).subjectAltName ?? '')
        .split(', ')
        .find((name) => name.startsWith('URI:'))
        ?.slice(4) ??
      '',
    x509_svid: Buffer.concat((chainPems ?? []).map(der)),
    x509_svid_key: key.export({ type: 'pkcs8', format: 'der' }),
    bundle: Buffer.concat(bundle.map((c) => der(c.certPem))),
    hint: '',
  };
}

/** DER bundle bytes for a federated or own trust domain. */
export function bundleBytes(certs: readonly IssuedCertificate[]): Buffer {
  return Buffer.concat(certs.map((c) => der(c.certPem)));
}
