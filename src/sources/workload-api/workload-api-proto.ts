import { fileURLToPath } from 'node:url';
import { type GrpcObject, loadPackageDefinition, type ServiceClientConstructor } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';

/** The vendored official definition (proto/spiffe/workload/workload.proto, Apache-2.0). */
export const WORKLOAD_PROTO_PATH = fileURLToPath(
  new URL('../../../proto/spiffe/workload/workload.proto', import.meta.url),
);

/** The security header every Workload API call carries (SPIFFE Workload Endpoint §4). */
export const WORKLOAD_API_HEADER = 'workload.spiffe.io';

/** Field names as in the proto (snake_case); absent scalars and maps decode to their defaults. */
export interface X509SvidMessage {
  readonly spiffe_id: string;
  readonly x509_svid: Buffer;
  readonly x509_svid_key: Buffer;
  readonly bundle: Buffer;
  readonly hint: string;
}

export interface X509SvidResponse {
  readonly svids: readonly X509SvidMessage[];
  readonly crl: readonly Buffer[];
  readonly federated_bundles: Readonly<Record<string, Buffer>>;
}

export interface X509BundlesResponse {
  readonly crl: readonly Buffer[];
  readonly bundles: Readonly<Record<string, Buffer>>;
}

let cached: ServiceClientConstructor | undefined;

/** The generated `SpiffeWorkloadAPI` client constructor; `.service` is the definition a server implements. */
export function workloadApiClientConstructor(): ServiceClientConstructor {
  cached ??= (
    loadPackageDefinition(
      loadSync(WORKLOAD_PROTO_PATH, { keepCase: true, defaults: true, arrays: true, objects: true }),
    ) as GrpcObject
  ).SpiffeWorkloadAPI as ServiceClientConstructor;
  return cached;
}
