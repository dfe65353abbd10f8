import { renderMeshManifests } from '../mesh/render-mesh-manifests.ts';

export interface MeshManifestsOptions {
  readonly name: string;
  readonly namespace: string;
  readonly address: string;
  readonly port: string;
  readonly serviceAccount: string;
  readonly style: string;
  readonly trustDomain: string;
  /** Optional: ServiceEntry/DestinationRule host (default `<name>.<namespace>.svc.<cluster domain>`). */
  readonly host?: string;
  /** Optional: the cluster's DNS domain (default cluster.local). */
  readonly clusterDomain?: string;
}

/** `mesh manifests`: prints the registration YAML for `kubectl apply -f -`; nothing is applied here. */
export async function runMeshManifests(opts: MeshManifestsOptions): Promise<void> {
  const { yaml } = renderMeshManifests(opts);
  process.stdout.write(yaml);
}
