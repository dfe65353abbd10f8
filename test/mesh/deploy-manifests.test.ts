import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { configSchema } from '../../src/config/config-schema.ts';
import { type JsonDoc, type ManifestObject, validateManifestYaml } from './helpers/validate-manifests.ts';

/*
 * deploy/kubernetes, checked without a cluster: every object against its Kubernetes/Istio schema
 * (kubernetes-models), then the cross-references a schema cannot see (selectors, port names,
 * mounted paths, probe ports, the gateway config inside the ConfigMap).
 */
const DIR = new URL('../../deploy/kubernetes/', import.meta.url);
const read = (name: string) => readFileSync(new URL(name, DIR), 'utf8');
const yamlFiles = readdirSync(DIR)
  .filter((f) => f.endsWith('.yaml'))
  .sort();
const manifestFiles = yamlFiles.filter((f) => f !== 'kustomization.yaml');
const objects: ManifestObject[] = manifestFiles.flatMap((f) => validateManifestYaml(read(f), f));
const kustomizationResources: string[] = parse(read('kustomization.yaml')).resources;

function one(kind: string): JsonDoc {
  const found = objects.filter((o) => o.kind === kind);
  assert.equal(found.length, 1, `expected exactly one ${kind}`);
  return found[0] as JsonDoc;
}

function matches(selector: Record<string, string>, labels: Record<string, string>): boolean {
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

const deployment = one('Deployment');
const pod = deployment.spec.template;
const container = pod.spec.containers.find((c: { name: string }) => c.name === 'gateway');
const gatewayYaml: string = one('ConfigMap').data['gateway.yaml'];
const gatewayConfig = configSchema.parse(parse(gatewayYaml));

describe('deploy/kubernetes', () => {
  it('every manifest passes the Kubernetes and Istio schemas', () => {
    assert.ok(manifestFiles.length >= 8, manifestFiles.join(', '));
    const kinds = new Set(objects.map((o) => o.kind));
    for (const kind of [
      'Namespace',
      'ServiceAccount',
      'ConfigMap',
      'Deployment',
      'Service',
      'PodDisruptionBudget',
      'HorizontalPodAutoscaler',
      'Secret',
      'DestinationRule',
      'NetworkPolicy',
    ]) {
      assert.ok(kinds.has(kind), `missing ${kind}`);
    }
    for (const o of objects) {
      if (o.kind !== 'Namespace')
        assert.equal(o.metadata?.namespace, 'egress-gateway', `${o.kind} ${o.metadata?.name}`);
    }
  });

  it('kustomization.yaml lists every manifest except the Secret example, which holds no key', () => {
    for (const resource of kustomizationResources) assert.ok(existsSync(new URL(resource, DIR)), resource);
    assert.deepEqual(
      [...kustomizationResources].sort(),
      manifestFiles.filter((f) => !f.endsWith('.example.yaml')),
    );
    const secret = one('Secret');
    assert.equal(secret.type, 'kubernetes.io/tls');
    for (const value of Object.values<string>(secret.stringData))
      assert.doesNotMatch(value, /BEGIN/, 'the example must not carry key or certificate material');
  });

  it('runs at least two non-root, read-only replicas with admin-API probes, spread across nodes', () => {
    assert.ok(deployment.spec.replicas >= 2);
    assert.ok(matches(deployment.spec.selector.matchLabels, pod.metadata.labels));
    assert.equal(
      pod.metadata.annotations['sidecar.istio.io/inject'],
      'false',
      'the gateway terminates mesh mTLS itself',
    );
    assert.equal(pod.spec.securityContext.runAsNonRoot, true);
    assert.ok(pod.spec.securityContext.runAsUser > 0);
    assert.equal(container.securityContext.readOnlyRootFilesystem, true);
    assert.equal(container.securityContext.allowPrivilegeEscalation, false);
    assert.deepEqual(container.securityContext.capabilities.drop, ['ALL']);
    const adminPort = container.ports.find((p: { name: string }) => p.name === 'admin').containerPort;
    assert.equal(adminPort, 9901);
    assert.deepEqual(
      [container.readinessProbe.httpGet, container.livenessProbe.httpGet],
      [
        { path: '/readyz', port: 'admin' },
        { path: '/healthz', port: 'admin' },
      ],
    );
    assert.ok(container.startupProbe.httpGet);
    assert.ok(
      pod.spec.topologySpreadConstraints.some(
        (c: { topologyKey: string }) => c.topologyKey === 'kubernetes.io/hostname',
      ),
    );
    for (const port of container.ports)
      assert.ok(port.name.length <= 15, `container port names are IANA service names (<= 15): ${port.name}`);
  });

  it('the ConfigMap holds a gateway config the gateway accepts, matching the container ports and mounts', () => {
    assert.deepEqual(container.args, ['serve', '--config', '/etc/egress-gateway/gateway.yaml']);
    const mountOf = (volume: string) =>
      container.volumeMounts.find((m: { name: string }) => m.name === volume).mountPath;
    const volumes = Object.fromEntries(pod.spec.volumes.map((v: { name: string }) => [v.name, v]));
    assert.equal(volumes.config.configMap.name, one('ConfigMap').metadata.name);
    assert.equal(`${mountOf('config')}/gateway.yaml`, '/etc/egress-gateway/gateway.yaml');
    assert.equal(volumes.svid.secret.secretName, one('Secret').metadata.name);
    assert.equal(gatewayConfig.identity.cert, `${mountOf('svid')}/tls.crt`);
    assert.equal(gatewayConfig.identity.key, `${mountOf('svid')}/tls.key`);
    assert.equal(
      volumes['mesh-ca'].configMap.name,
      'istio-ca-root-cert',
      "istiod's per-namespace copy of the mesh root",
    );
    assert.equal(gatewayConfig.identity.trustAnchors, `${mountOf('mesh-ca')}/root-cert.pem`);
    assert.ok(volumes.tmp.emptyDir, 'a writable /tmp next to the read-only root filesystem');
    assert.equal(mountOf('tmp'), '/tmp');
    assert.equal(gatewayConfig.admin.listen, '0.0.0.0:9901', 'kubelet probes reach the pod IP, not loopback');
    const proxyPort = container.ports.find((p: { name: string }) => p.name === 'tcp-proxy').containerPort;
    assert.deepEqual(
      gatewayConfig.listeners.map((l) => l.listen),
      [`0.0.0.0:${proxyPort}`],
    );
    assert.equal(gatewayConfig.listeners[0]?.snat, undefined, 'a pod has no extra address to bind');
    // Grace period covers the preStop pause plus the gateway's own drain.
    const preStop = Number(container.lifecycle.preStop.exec.command[1]);
    assert.ok(pod.spec.terminationGracePeriodSeconds * 1000 > gatewayConfig.timeouts.drain + preStop * 1000);
  });

  it('the Service exposes the proxy port as opaque TCP to the gateway pods', () => {
    const service = one('Service');
    assert.ok(matches(service.spec.selector, pod.metadata.labels));
    assert.equal(service.spec.ports.length, 1);
    const [port] = service.spec.ports;
    assert.match(port.name, /^tcp-/);
    assert.equal(port.appProtocol, 'tcp');
    assert.ok(container.ports.some((p: { name: string }) => p.name === port.targetPort));
  });

  it('PodDisruptionBudget and HorizontalPodAutoscaler target the Deployment and keep two replicas', () => {
    const pdb = one('PodDisruptionBudget');
    assert.ok(matches(pdb.spec.selector.matchLabels, pod.metadata.labels));
    assert.ok(pdb.spec.minAvailable >= 1 && pdb.spec.minAvailable < deployment.spec.replicas);
    const hpa = one('HorizontalPodAutoscaler');
    assert.deepEqual(hpa.spec.scaleTargetRef, {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      name: deployment.metadata.name,
    });
    assert.ok(hpa.spec.minReplicas >= 2);
    assert.ok(hpa.spec.maxReplicas > hpa.spec.minReplicas);
  });

  it('hardened like the restricted Pod Security Standard: read-only root, no capabilities, RuntimeDefault seccomp', () => {
    assert.equal(pod.spec.securityContext.seccompProfile.type, 'RuntimeDefault');
    assert.equal(pod.spec.automountServiceAccountToken, false);
    assert.equal(pod.spec.hostNetwork ?? false, false);
    for (const c of pod.spec.containers) {
      assert.equal(c.securityContext.readOnlyRootFilesystem, true, c.name);
      assert.equal(c.securityContext.allowPrivilegeEscalation, false, c.name);
      assert.deepEqual(c.securityContext.capabilities, { drop: ['ALL'] }, c.name);
    }
    const keys = pod.spec.topologySpreadConstraints.map((c: JsonDoc) => c.topologyKey);
    assert.deepEqual(keys, ['kubernetes.io/hostname', 'topology.kubernetes.io/zone']);
    for (const c of pod.spec.topologySpreadConstraints)
      assert.ok(matches(c.labelSelector.matchLabels, pod.metadata.labels), 'each spread constraint counts these pods');
  });

  it('the NetworkPolicy admits mesh clients on the proxy port only and lets out DNS and the allowed destinations', () => {
    const policy = one('NetworkPolicy');
    assert.ok(matches(policy.spec.podSelector.matchLabels, pod.metadata.labels));
    assert.deepEqual(policy.spec.policyTypes, ['Ingress', 'Egress']);
    const containerPorts = new Set(container.ports.map((p: { name: string }) => p.name));
    const ingressPorts = policy.spec.ingress.flatMap((r: JsonDoc) => r.ports.map((p: JsonDoc) => p.port));
    for (const port of ingressPorts) assert.ok(containerPorts.has(port), `ingress port ${port} names a container port`);
    const proxyRule = policy.spec.ingress.find((r: JsonDoc) => r.ports.some((p: JsonDoc) => p.port === 'tcp-proxy'));
    assert.deepEqual(proxyRule.from, [{ namespaceSelector: {} }], 'clients from every namespace; rules decide');
    const egressPorts = new Set(policy.spec.egress.flatMap((r: JsonDoc) => r.ports.map((p: JsonDoc) => p.port)));
    assert.ok(egressPorts.has(53), 'cluster DNS');
    for (const rule of gatewayConfig.rules)
      for (const port of rule.to?.ports ?? []) assert.ok(egressPorts.has(port), `rule ${rule.name} port ${port}`);
  });

  it('the DestinationRule makes client sidecars originate ISTIO_MUTUAL to the Service', () => {
    const rule = one('DestinationRule');
    const service = one('Service');
    assert.equal(rule.spec.host, `${service.metadata.name}.${service.metadata.namespace}.svc.cluster.local`);
    assert.equal(rule.spec.trafficPolicy.tls.mode, 'ISTIO_MUTUAL');
  });
});
