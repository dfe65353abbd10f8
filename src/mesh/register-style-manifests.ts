import type { IDestinationRule } from '@kubernetes-models/istio/networking.istio.io/v1/DestinationRule';
import type { IEndpoints } from 'kubernetes-models/v1/Endpoints';
import type { IService } from 'kubernetes-models/v1/Service';
import type { IServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import type { MeshRegistration } from './mesh-registration.ts';

/**
 * The annotation `istioctl register -s <sa>` wrote. istiod still turns it into the service's
 * secure-naming list (`spiffe://<td>/ns/<ns>/sa/<sa>`), though istio/api marks it deprecated.
 */
export const SERVICE_ACCOUNTS_ANNOTATION = 'alpha.istio.io/kubernetes-serviceaccounts';

export type RegisterStyleManifest = IServiceAccount | IService | IEndpoints | IDestinationRule;

/**
 * What `istioctl register -n <ns> <name> <ip> <port> -s <sa>` created (removed in Istio 1.9): a
 * selector-less Service and an Endpoints object of the same name carrying the service-account
 * annotation. Two corrections: the port is named `tcp-proxy` (register named 3128 "3128", which
 * Istio now sniffs) and a DestinationRule asks for ISTIO_MUTUAL, because auto-mTLS only upgrades
 * endpoints it knows carry a sidecar, and bare Endpoints addresses carry no pod labels.
 */
export function registerStyleManifests(reg: MeshRegistration): RegisterStyleManifest[] {
  const annotations = { [SERVICE_ACCOUNTS_ANNOTATION]: reg.serviceAccount };
  const metadata = { name: reg.name, namespace: reg.namespace, labels: { ...reg.labels }, annotations };
  const ports = [{ name: reg.portName, port: reg.port, protocol: 'TCP' as const, appProtocol: 'tcp' }];
  return [
    {
      apiVersion: 'v1',
      kind: 'ServiceAccount',
      metadata: { name: reg.serviceAccount, namespace: reg.namespace, labels: { ...reg.labels } },
    },
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata,
      // No selector: Kubernetes then leaves the Endpoints object below to us.
      spec: { type: 'ClusterIP', ports: ports.map((p) => ({ ...p, targetPort: reg.port })) },
    },
    {
      apiVersion: 'v1',
      kind: 'Endpoints',
      metadata,
      subsets: [{ addresses: reg.addresses.map((ip) => ({ ip })), ports }],
    },
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'DestinationRule',
      metadata: { name: reg.name, namespace: reg.namespace, labels: { ...reg.labels } },
      spec: { host: reg.host, trafficPolicy: { tls: { mode: 'ISTIO_MUTUAL' } } },
    },
  ];
}
