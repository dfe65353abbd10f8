import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRootCa, issueLeaf } from '../../../src/pki/issue-certificate.ts';
import { exportPrivateKeyPem } from '../../../src/pki/key-pair.ts';

export interface SiemPki {
  readonly dir: string;
  /** The SIEM's CA: it signs the receivers' server certificates and the gateway's client certificate. */
  readonly caPath: string;
  readonly server: { readonly certPath: string; readonly keyPath: string };
  readonly client: { readonly certPath: string; readonly keyPath: string };
  /** A client certificate from a CA the receiver does not trust. */
  readonly strangerClient: { readonly certPath: string; readonly keyPath: string; readonly caPath: string };
  cleanup(): void;
}

/** Minted in the test run (nothing committed): a SIEM CA, a server cert for 127.0.0.1/localhost and client certs. */
export async function createSiemPki(): Promise<SiemPki> {
  const dir = mkdtempSync(join(tmpdir(), 'egw-siem-pki-'));
  const write = (name: string, text: string) => {
    const path = join(dir, name);
    writeFileSync(path, text, { mode: 0o600 });
    return path;
  };
  const ca = await createRootCa({ commonName: 'Test SIEM CA', organization: 'siem' });
  const stranger = await createRootCa({ commonName: 'Stranger CA', organization: 'elsewhere' });
  const leaf = async (name: string, issuer: typeof ca, commonName: string, server: boolean) => {
    const issued = await issueLeaf(
      issuer,
      server ? { commonName, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] } : { commonName },
    );
    return {
      certPath: write(`${name}.pem`, issued.certPem),
      keyPath: write(`${name}.key`, await exportPrivateKeyPem(issued.keys.privateKey)),
    };
  };
  return {
    dir,
    caPath: write('siem-ca.pem', ca.certPem),
    server: await leaf('siem-server', ca, 'siem.test', true),
    client: await leaf('siem-client', ca, 'egress-gateway', false),
    strangerClient: {
      ...(await leaf('stranger-client', stranger, 'egress-gateway', false)),
      caPath: write('stranger-ca.pem', stranger.certPem),
    },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}
