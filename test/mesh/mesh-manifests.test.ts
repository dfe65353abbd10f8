import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runMeshManifests } from '../../src/cli/mesh-commands.ts';
import { isGatewayError } from '../../src/core/errors.ts';
import { type MeshRegistrationInput, parseMeshRegistration } from '../../src/mesh/mesh-registration.ts';
import { renderMeshManifests } from '../../src/mesh/render-mesh-manifests.ts';
import { runCli } from '../helpers/run-command.ts';
import {
  type JsonDoc,
  type ManifestObject,
  validateManifest,
  validateManifestYaml,
} from './helpers/validate-manifests.ts';

const SEED: MeshRegistrationInput = {
  name: 'bigip-proxy-svc',
  namespace: 'bookinfo',
  address: '10.4.0.201',
  port: '3128',
  serviceAccount: 'bigip-proxy',
  style: 'workloadentry',
  trustDomain: 'cluster.local',
};

function byKind(objects: readonly ManifestObject[], kind: string): ManifestObject[] {
  return objects.filter((o) => o.kind === kind);
}

function only(objects: readonly ManifestObject[], kind: string): JsonDoc {
  const found = byKind(objects, kind);
  assert.equal(found.length, 1, `expected one ${kind}, got ${found.length}`);
  return found[0] as JsonDoc;
}

async function captureStdout(fn: () => Promise<void>): Promise<string> {
  const write = process.stdout.write;
  let text = '';
  process.stdout.write = ((chunk: string | Uint8Array) => {
    text += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    return true;
  }) as typeof process.stdout.write;
  try {
    await fn();
  } finally {
    process.stdout.write = write;
  }
  return text;
}

describe('mesh manifests', () => {
  it('renders what istioctl register created, valid against the Kubernetes and Istio schemas', () => {
    const objects = validateManifestYaml(renderMeshManifests({ ...SEED, style: 'register' }).yaml);
    assert.deepEqual(
      objects.map((o) => o.kind),
      ['ServiceAccount', 'Service', 'Endpoints', 'DestinationRule'],
    );
    const service = only(objects, 'Service');
    assert.equal(service.metadata.name, 'bigip-proxy-svc');
    assert.equal(service.metadata.namespace, 'bookinfo');
    assert.equal(service.spec.selector, undefined, 'selector-less, so Kubernetes leaves the Endpoints to us');
    assert.equal(service.metadata.annotations['alpha.istio.io/kubernetes-serviceaccounts'], 'bigip-proxy');
    assert.deepEqual(service.spec.ports, [
      { name: 'tcp-proxy', port: 3128, protocol: 'TCP', appProtocol: 'tcp', targetPort: 3128 },
    ]);
    const endpoints = only(objects, 'Endpoints');
    assert.equal(endpoints.metadata.name, service.metadata.name, 'Endpoints attach to the Service by name');
    assert.equal(endpoints.metadata.annotations['alpha.istio.io/kubernetes-serviceaccounts'], 'bigip-proxy');
    assert.deepEqual(endpoints.subsets, [
      {
        addresses: [{ ip: '10.4.0.201' }],
        ports: [{ name: 'tcp-proxy', port: 3128, protocol: 'TCP', appProtocol: 'tcp' }],
      },
    ]);
    const rule = only(objects, 'DestinationRule');
    assert.equal(rule.spec.host, 'bigip-proxy-svc.bookinfo.svc.cluster.local');
    assert.equal(rule.spec.trafficPolicy.tls.mode, 'ISTIO_MUTUAL');
    assert.equal(only(objects, 'ServiceAccount').metadata.name, 'bigip-proxy');
  });

  it('renders WorkloadEntry + ServiceEntry (MESH_INTERNAL, STATIC) + DestinationRule (ISTIO_MUTUAL), valid against the Istio schemas', () => {
    const objects = validateManifestYaml(renderMeshManifests(SEED).yaml);
    assert.deepEqual(
      objects.map((o) => o.kind),
      ['ServiceAccount', 'WorkloadEntry', 'ServiceEntry', 'DestinationRule'],
    );
    const entry = only(objects, 'WorkloadEntry');
    assert.equal(entry.spec.address, '10.4.0.201');
    assert.equal(
      entry.spec.serviceAccount,
      'bigip-proxy',
      'secure naming comes from the WorkloadEntry service account',
    );
    assert.equal(
      entry.metadata.namespace,
      'bookinfo',
      'the service account is resolved in the WorkloadEntry namespace',
    );
    const serviceEntry = only(objects, 'ServiceEntry');
    assert.equal(serviceEntry.spec.location, 'MESH_INTERNAL');
    assert.equal(serviceEntry.spec.resolution, 'STATIC');
    assert.deepEqual(serviceEntry.spec.hosts, ['bigip-proxy-svc.bookinfo.svc.cluster.local']);
    assert.deepEqual(serviceEntry.spec.addresses, ['10.4.0.201']);
    assert.deepEqual(serviceEntry.spec.ports, [{ number: 3128, name: 'tcp-proxy', protocol: 'TCP', targetPort: 3128 }]);
    for (const [key, value] of Object.entries(serviceEntry.spec.workloadSelector.labels)) {
      assert.equal(entry.spec.labels[key], value, `the ServiceEntry selector must select the WorkloadEntry (${key})`);
    }
    assert.deepEqual(
      Object.keys(entry.spec.ports),
      ['tcp-proxy'],
      'WorkloadEntry ports are keyed by the ServiceEntry port name',
    );
    const rule = only(objects, 'DestinationRule');
    assert.equal(rule.spec.host, serviceEntry.spec.hosts[0]);
    assert.equal(rule.spec.trafficPolicy.tls.mode, 'ISTIO_MUTUAL');
  });

  it('names every proxy port tcp- so Istio never treats it as HTTP (which breaks CONNECT with 404 NR)', () => {
    for (const style of ['register', 'workloadentry']) {
      const objects = validateManifestYaml(renderMeshManifests({ ...SEED, style }).yaml);
      const names = objects.flatMap((o: JsonDoc) => [
        ...(Array.isArray(o.spec?.ports) ? o.spec.ports : []).map((p: { name: string }) => p.name),
        ...(o.subsets ?? []).flatMap((s: { ports: Array<{ name: string }> }) => s.ports.map((p) => p.name)),
        ...Object.keys(o.kind === 'WorkloadEntry' ? (o.spec.ports ?? {}) : {}),
      ]);
      assert.ok(names.length >= 1, style);
      for (const name of names) assert.match(name, /^tcp-/, `${style}: port ${name}`);
    }
  });

  it('states the SPIFFE ID the gateway certificate must carry and the SNI sidecars will send', () => {
    const { yaml, registration } = renderMeshManifests({ ...SEED, trustDomain: 'prod.example.org' });
    assert.equal(registration.spiffeId, 'spiffe://prod.example.org/ns/bookinfo/sa/bigip-proxy');
    assert.equal(registration.sni, 'outbound_.3128_._.bigip-proxy-svc.bookinfo.svc.cluster.local');
    assert.match(yaml, /^# .*\n/, 'the YAML starts with an explanatory comment');
    assert.match(yaml, /#\s+spiffe:\/\/prod\.example\.org\/ns\/bookinfo\/sa\/bigip-proxy\n/);
    assert.match(
      yaml,
      /pki issue --ca-dir .* --spiffe-id spiffe:\/\/prod\.example\.org\/ns\/bookinfo\/sa\/bigip-proxy/,
    );
  });

  it('emits one WorkloadEntry and one Endpoints address per gateway instance, IPv6 included', () => {
    const input = { ...SEED, address: '10.4.0.201, 10.4.0.202,fd00::c8' };
    const entries = byKind(validateManifestYaml(renderMeshManifests(input).yaml), 'WorkloadEntry');
    assert.deepEqual(
      entries.map((e) => e.metadata?.name),
      ['bigip-proxy-svc-10-4-0-201', 'bigip-proxy-svc-10-4-0-202', 'bigip-proxy-svc-fd00-c8'],
    );
    const endpoints = only(
      validateManifestYaml(renderMeshManifests({ ...input, style: 'register' }).yaml),
      'Endpoints',
    );
    assert.deepEqual(endpoints.subsets[0].addresses, [{ ip: '10.4.0.201' }, { ip: '10.4.0.202' }, { ip: 'fd00::c8' }]);
  });

  it('uses an explicit host and cluster domain when given', () => {
    const objects = validateManifestYaml(renderMeshManifests({ ...SEED, host: 'bigip-proxy.bookinfo.mesh' }).yaml);
    assert.deepEqual(only(objects, 'ServiceEntry').spec.hosts, ['bigip-proxy.bookinfo.mesh']);
    const other = renderMeshManifests({ ...SEED, clusterDomain: 'k8s.internal' });
    assert.equal(other.registration.host, 'bigip-proxy-svc.bookinfo.svc.k8s.internal');
  });

  it('refuses invalid options and names the option at fault', () => {
    const cases: Array<[Partial<MeshRegistrationInput>, RegExp]> = [
      [{ name: 'BigIP_Proxy' }, /--name/],
      [{ name: '3128-proxy' }, /--name/],
      [{ namespace: 'Book.Info' }, /--namespace/],
      [{ address: 'bigip.example.com' }, /--address .*not a host name/],
      [{ address: '10.4.0.201,10.4.0.201' }, /--address .*twice/],
      [{ address: ' , ' }, /--address/],
      [{ port: '0' }, /--port/],
      [{ port: '65536' }, /--port/],
      [{ port: '31x' }, /--port/],
      [{ port: '-1' }, /--port/],
      [{ serviceAccount: 'Bigip Proxy' }, /--service-account/],
      [{ style: 'istioctl' }, /--style/],
      [{ trustDomain: 'Cluster.Local' }, /--trust-domain/],
    ];
    for (const [override, pattern] of cases) {
      assert.throws(
        () => parseMeshRegistration({ ...SEED, ...override }),
        (error: unknown) => isGatewayError(error, 'EGW_CONFIG_INVALID') && pattern.test(error.message),
        JSON.stringify(override),
      );
    }
  });

  it('has a schema check that can fail: broken objects are rejected', () => {
    const objects = renderMeshManifests(SEED).manifests as unknown as Array<JsonDoc>;
    const serviceEntry = structuredClone(objects.find((o) => o.kind === 'ServiceEntry')) as JsonDoc;
    serviceEntry.spec.location = 'MESH_SOMEWHERE';
    assert.throws(() => validateManifest(serviceEntry), /location/);
    const entry = structuredClone(objects.find((o) => o.kind === 'WorkloadEntry')) as JsonDoc;
    entry.spec.ports = { 'tcp-proxy': '3128' };
    assert.throws(() => validateManifest(entry), /ports/);
    const badName = structuredClone(entry);
    badName.metadata.name = 'Not_A_Name';
    assert.throws(() => validateManifest(badName), /metadata\.name/);
    assert.throws(
      () => validateManifest({ apiVersion: 'networking.istio.io/v1alpha1', kind: 'Unknown', metadata: { name: 'x' } }),
      /no schema/,
    );
  });

  it('runMeshManifests prints the same YAML to stdout', async () => {
    const text = await captureStdout(() =>
      runMeshManifests({ ...SEED, port: '3128', style: 'register', trustDomain: 'cluster.local' }),
    );
    assert.equal(text, renderMeshManifests({ ...SEED, style: 'register' }).yaml);
    assert.equal(validateManifestYaml(text).length, 4);
  });

  it('egress-gateway mesh manifests prints valid YAML for the seed article registration', async () => {
    const args = [
      'mesh',
      'manifests',
      '--name',
      'bigip-proxy-svc',
      '--namespace',
      'bookinfo',
      '--address',
      '10.4.0.201',
      '--port',
      '3128',
      '--service-account',
      'bigip-proxy',
    ];
    const defaults = await runCli(args);
    assert.equal(defaults.code, 0, defaults.stderr);
    assert.deepEqual(
      validateManifestYaml(defaults.stdout).map((o) => o.kind),
      ['ServiceAccount', 'WorkloadEntry', 'ServiceEntry', 'DestinationRule'],
      'workloadentry is the default style',
    );
    const register = await runCli([...args, '--style', 'register', '--trust-domain', 'cluster.local']);
    assert.equal(register.code, 0, register.stderr);
    assert.ok(validateManifestYaml(register.stdout).some((o) => o.kind === 'Endpoints'));
    const bad = await runCli([...args.slice(0, -2), '--service-account', 'Not Valid']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /error \[EGW_CONFIG_INVALID\]: --service-account/);
  });
});
