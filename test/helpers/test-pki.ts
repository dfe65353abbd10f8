import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createIntermediateCa,
  createRootCa,
  type IssuedCertificate,
  issueLeaf,
  type LeafOptions,
} from '../../src/pki/issue-certificate.ts';
import { exportPrivateKeyPem } from '../../src/pki/key-pair.ts';

/**
 * An in-process mesh PKI minted per test run (go-spiffe's test CA idea): root → intermediate
 * ("mesh CA") → leaves. Nothing is committed; files live in a temp dir removed by `cleanup`.
 */
export interface TestPki {
  readonly dir: string;
  readonly trustDomain: string;
  readonly root: IssuedCertificate;
  readonly intermediate: IssuedCertificate;
  /** PEM files: intermediate only (the default anchor), root only, and intermediate + root. */
  readonly intermediatePath: string;
  readonly rootPath: string;
  readonly bundlePath: string;
  readonly gateway: WrittenLeaf;
  issue(
    name: string,
    options: LeafOptions & { chain?: readonly IssuedCertificate[]; issuer?: IssuedCertificate },
  ): Promise<WrittenLeaf>;
  workload(
    namespace: string,
    serviceAccount: string,
    options?: LeafOptions & { chain?: readonly IssuedCertificate[] },
  ): Promise<WrittenLeaf>;
  cleanup(): void;
}

export interface WrittenLeaf {
  readonly leaf: IssuedCertificate;
  /** Leaf followed by the chain (the intermediate unless overridden). */
  readonly certPath: string;
  readonly keyPath: string;
  /** Leaf alone. */
  readonly leafOnlyPath: string;
}

export async function createTestPki(
  options: { trustDomain?: string; keyType?: 'ecdsa-p256' | 'rsa-2048' } = {},
): Promise<TestPki> {
  const trustDomain = options.trustDomain ?? 'cluster.local';
  const dir = mkdtempSync(join(tmpdir(), 'egw-pki-'));
  const root = await createRootCa({
    commonName: 'Test Mesh Root',
    organization: 'test',
    keyType: options.keyType ?? 'ecdsa-p256',
  });
  const intermediate = await createIntermediateCa(root, {
    commonName: 'Test Mesh Intermediate',
    organization: 'test',
    keyType: options.keyType ?? 'ecdsa-p256',
  });
  const write = (name: string, text: string) => {
    const path = join(dir, name);
    writeFileSync(path, text, { mode: 0o600 });
    return path;
  };
  const intermediatePath = write('intermediate.pem', intermediate.certPem);
  const rootPath = write('root.pem', root.certPem);
  const bundlePath = write('bundle.pem', `${intermediate.certPem}\n${root.certPem}`);

  async function issue(
    name: string,
    leafOptions: LeafOptions & { chain?: readonly IssuedCertificate[]; issuer?: IssuedCertificate },
  ): Promise<WrittenLeaf> {
    const leaf = await issueLeaf(leafOptions.issuer ?? intermediate, leafOptions);
    const chain = leafOptions.chain ?? [intermediate];
    return {
      leaf,
      certPath: write(`${name}.cert.pem`, [leaf.certPem, ...chain.map((c) => c.certPem)].join('\n')),
      keyPath: write(`${name}.key.pem`, await exportPrivateKeyPem(leaf.keys.privateKey)),
      leafOnlyPath: write(`${name}.leaf.pem`, leaf.certPem),
    };
  }

  const gateway = await issue('gateway', {
    spiffeIds: [`spiffe://${trustDomain}/ns/bookinfo/sa/bigip-proxy`],
    dnsNames: ['localhost'],
    ipAddresses: ['127.0.0.1'],
  });
  return {
    dir,
    trustDomain,
    root,
    intermediate,
    intermediatePath,
    rootPath,
    bundlePath,
    gateway,
    issue,
    workload: (namespace, serviceAccount, extra = {}) =>
      issue(`${namespace}-${serviceAccount}-${Math.random().toString(36).slice(2, 8)}`, {
        spiffeIds: [`spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`],
        ...extra,
      }),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}
