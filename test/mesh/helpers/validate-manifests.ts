import { DestinationRule } from '@kubernetes-models/istio/networking.istio.io/v1/DestinationRule';
import { ServiceEntry } from '@kubernetes-models/istio/networking.istio.io/v1/ServiceEntry';
import { WorkloadEntry } from '@kubernetes-models/istio/networking.istio.io/v1/WorkloadEntry';
import { PeerAuthentication } from '@kubernetes-models/istio/security.istio.io/v1/PeerAuthentication';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Endpoints } from 'kubernetes-models/v1/Endpoints';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { parseAllDocuments } from 'yaml';

/** Anything with a `.validate()` that throws on a schema violation (kubernetes-models classes). */
type ModelClass = new (data: never) => { validate(): void };

/**
 * The kinds this repository ships, by `apiVersion/kind`. A manifest of any other kind fails the
 * validation on purpose: nothing leaves the repository without a schema check.
 */
const MODELS: Record<string, ModelClass> = {
  'v1/Namespace': Namespace,
  'v1/ServiceAccount': ServiceAccount,
  'v1/Service': Service,
  'v1/Endpoints': Endpoints,
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'apps/v1/Deployment': Deployment,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'networking.istio.io/v1/ServiceEntry': ServiceEntry,
  'networking.istio.io/v1/WorkloadEntry': WorkloadEntry,
  'networking.istio.io/v1/DestinationRule': DestinationRule,
  'security.istio.io/v1/PeerAuthentication': PeerAuthentication,
};

// apimachinery's name rules, which the generated schemas do not encode.
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const QUALIFIED_NAME =
  /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;

/** A parsed YAML/JSON document walked by assertions. */
// biome-ignore lint/suspicious/noExplicitAny: assertions walk a JSON document
export type JsonDoc = Record<string, any>;

export interface ManifestObject {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata?: {
    name?: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  readonly [key: string]: unknown;
}

/**
 * Validates one object against the Kubernetes/Istio schema of its kind (kubernetes-models, which
 * compiles the upstream OpenAPI/CRD schemas) plus the object-name and label rules the API server
 * applies. Throws an Error naming the object and the first violation.
 */
export function validateManifest(object: unknown): ManifestObject {
  if (typeof object !== 'object' || object === null) throw new Error(`not an object: ${JSON.stringify(object)}`);
  const manifest = object as ManifestObject;
  const key = `${manifest.apiVersion}/${manifest.kind}`;
  const label = `${key} ${manifest.metadata?.name ?? '(no name)'}`;
  const Model = MODELS[key];
  if (!Model) throw new Error(`${label}: no schema known for this apiVersion/kind`);
  const name = manifest.metadata?.name;
  if (!name || name.length > 253 || !DNS1123_SUBDOMAIN.test(name))
    throw new Error(`${label}: metadata.name must be a DNS-1123 subdomain`);
  const namespace = manifest.metadata?.namespace;
  if (namespace !== undefined && (namespace.length > 63 || !DNS1123_LABEL.test(namespace)))
    throw new Error(`${label}: metadata.namespace must be a DNS-1123 label`);
  for (const [k, v] of Object.entries(manifest.metadata?.labels ?? {})) {
    if (!QUALIFIED_NAME.test(k) || typeof v !== 'string' || v.length > 63 || !LABEL_VALUE.test(v))
      throw new Error(`${label}: invalid label ${k}=${v}`);
  }
  for (const k of Object.keys(manifest.metadata?.annotations ?? {})) {
    if (!QUALIFIED_NAME.test(k)) throw new Error(`${label}: invalid annotation key ${k}`);
  }
  const { apiVersion: _a, kind: _k, ...data } = manifest;
  try {
    new Model(data as never).validate();
  } catch (error) {
    throw new Error(`${label}: ${(error as Error).message}`);
  }
  return manifest;
}

/** Parses multi-document YAML (as `kubectl apply -f` reads it) and validates every document. */
export function validateManifestYaml(text: string, source = 'yaml'): ManifestObject[] {
  const documents = parseAllDocuments(text);
  if (!Array.isArray(documents)) throw new Error(`${source}: not a YAML stream`);
  const objects: ManifestObject[] = [];
  for (const doc of documents) {
    if (doc.errors.length > 0) throw new Error(`${source}: ${doc.errors[0]?.message}`);
    const value = doc.toJS();
    if (value === null || value === undefined) continue; // an empty document, e.g. a trailing ---
    objects.push(validateManifest(value));
  }
  return objects;
}
