import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { resolveConfigPath } from '../config/load-config.ts';
import { CA_FILES, initCaDirectory, issueToDirectory } from '../pki/ca-directory.ts';

/** Sample workloads minted with the dev PKI: one the default rules allow, one they refuse. */
export const DEV_WORKLOADS = Object.freeze([
  { dir: 'workloads/bookinfo-productpage', namespace: 'bookinfo', serviceAccount: 'productpage' },
  { dir: 'workloads/sm-apigw-a', namespace: 'sm-apigw-a', serviceAccount: 'default' },
]);

/**
 * First-run convenience for `npm start`: when the dev PKI directory has no CA yet, mint one in
 * Istio's `cacerts` layout plus the gateway's SVID and the sample workload SVIDs. Never touches an
 * existing CA. Returns true when it generated anything.
 */
export async function ensureDevPki(dir: string, trustDomain: string): Promise<boolean> {
  if (existsSync(join(dir, CA_FILES.caKey)) && existsSync(join(dir, 'gateway', 'cert.pem'))) return false;
  if (!existsSync(join(dir, CA_FILES.caKey))) await initCaDirectory(dir, { trustDomain });
  await issueToDirectory(dir, join(dir, 'gateway'), {
    spiffeIds: [`spiffe://${trustDomain}/ns/bookinfo/sa/bigip-proxy`],
    dnsNames: ['localhost', 'bigip-proxy-svc.bookinfo.svc.cluster.local'],
    ipAddresses: ['127.0.0.1'],
    ttlMs: 90 * 24 * 3_600_000,
  });
  for (const workload of DEV_WORKLOADS) {
    await issueToDirectory(dir, join(dir, workload.dir), {
      spiffeIds: [`spiffe://${trustDomain}/ns/${workload.namespace}/sa/${workload.serviceAccount}`],
      ttlMs: 90 * 24 * 3_600_000,
    });
  }
  return true;
}

/** Start-up step of every serving mode (single process, cluster primary): `identity.devPki` as configured. */
export async function prepareDevPki(
  identity: { readonly trustDomain: string; readonly devPki?: { generateIfMissing: boolean; dir: string } | undefined },
  log: (message: string) => void,
): Promise<void> {
  const devPki = identity.devPki;
  if (devPki?.generateIfMissing && (await ensureDevPki(resolveConfigPath(devPki.dir), identity.trustDomain)))
    log(`generated a development PKI in ${resolve(devPki.dir)} (never use it in production)`);
}
