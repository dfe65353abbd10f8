import type { IDestinationRule } from '@kubernetes-models/istio/networking.istio.io/v1/DestinationRule';
import type { IServiceEntry } from '@kubernetes-models/istio/networking.istio.io/v1/ServiceEntry';
import type { IWorkloadEntry } from '@kubernetes-models/istio/networking.istio.io/v1/WorkloadEntry';
import type { IServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import type { MeshRegistration } from './mesh-registration.ts';

export type WorkloadEntryStyleManifest = IServiceAccount | IWorkloadEntry | IServiceEntry | IDestinationRule;

/** `10.4.0.201` → `10-4-0-201`; IPv6 colons become dashes too (object names are DNS subdomains). */
function addressSuffix(address: string): string {
  return address.toLowerCase().replace(/[.:]+/g, '-').replace(/^-|-$/g, '');
}

/**
 * The supported replacement for `istioctl register`: one WorkloadEntry per gateway address, a
 * ServiceEntry selecting them, and a DestinationRule with ISTIO_MUTUAL.
 *
 * - WorkloadEntry `serviceAccount` is what gives secure naming: istiod makes it
 *   `spiffe://<td>/ns/<ns>/sa/<sa>` and client sidecars demand exactly that URI SAN. It also
 *   marks the endpoint tlsMode=istio, so auto-mTLS would upgrade; the DestinationRule makes it
 *   explicit, so a mesh with auto-mTLS switched off behaves the same.
 * - ServiceEntry `MESH_INTERNAL` + `STATIC`: the endpoints are mesh workloads reached by IP.
 *   `addresses` are the gateway IPs themselves, so a client that dials the IP (no DNS proxying)
 *   is still captured by the TCP listener `<ip>_<port>`, and a TCP port without addresses would
 *   match on the port alone and clash with any other service on that port.
 */
export function workloadEntryStyleManifests(reg: MeshRegistration): WorkloadEntryStyleManifest[] {
  const selector = { app: reg.name };
  const workloadEntries: IWorkloadEntry[] = reg.addresses.map(
    (address): IWorkloadEntry => ({
      apiVersion: 'networking.istio.io/v1',
      kind: 'WorkloadEntry',
      metadata: { name: `${reg.name}-${addressSuffix(address)}`, namespace: reg.namespace, labels: { ...reg.labels } },
      spec: {
        address,
        serviceAccount: reg.serviceAccount,
        labels: { ...reg.labels },
        ports: { [reg.portName]: reg.port },
      },
    }),
  );
  return [
    {
      apiVersion: 'v1',
      kind: 'ServiceAccount',
      metadata: { name: reg.serviceAccount, namespace: reg.namespace, labels: { ...reg.labels } },
    },
    ...workloadEntries,
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'ServiceEntry',
      metadata: { name: reg.name, namespace: reg.namespace, labels: { ...reg.labels } },
      spec: {
        hosts: [reg.host],
        addresses: [...reg.addresses],
        location: 'MESH_INTERNAL',
        resolution: 'STATIC',
        ports: [{ number: reg.port, name: reg.portName, protocol: 'TCP', targetPort: reg.port }],
        workloadSelector: { labels: selector },
      },
    },
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'DestinationRule',
      metadata: { name: reg.name, namespace: reg.namespace, labels: { ...reg.labels } },
      spec: { host: reg.host, trafficPolicy: { tls: { mode: 'ISTIO_MUTUAL' } } },
    },
  ];
}
