import { hostname } from 'node:os';
import { VERSION } from '../core/version.ts';

/** Describes the gateway itself in every record (ECS `observer.*`). */
export const OBSERVER = Object.freeze({
  type: 'proxy',
  vendor: 'mesh-egress-gateway',
  product: 'mesh-egress-gateway',
  version: VERSION,
  hostname: hostname(),
});

export const ECS_VERSION = '9.4.0';
