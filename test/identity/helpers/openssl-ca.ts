import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { IssuedCertificate } from '../../../src/pki/issue-certificate.ts';
import { exportPrivateKeyPem } from '../../../src/pki/key-pair.ts';

/**
 * A minimal `openssl ca` set-up around an already minted CA, in its own directory, so tests
 * revoke certificates and issue CRLs with the real tool operators use.
 */
export interface OpensslCa {
  readonly dir: string;
  /** `openssl ca -revoke`; the certificate need not have been issued by `openssl ca`. */
  revoke(certPem: string, reason?: string): void;
  /** `openssl ca -gencrl`; returns the path of the written CRL (PEM, or DER when asked). */
  gencrl(name: string, options?: { der?: boolean; lastUpdate?: string; nextUpdate?: string }): string;
}

export async function createOpensslCa(ca: IssuedCertificate, dir: string): Promise<OpensslCa> {
  mkdirSync(join(dir, 'newcerts'), { recursive: true });
  writeFileSync(join(dir, 'ca.pem'), ca.certPem);
  writeFileSync(join(dir, 'ca.key'), await exportPrivateKeyPem(ca.keys.privateKey), { mode: 0o600 });
  writeFileSync(join(dir, 'index.txt'), '');
  writeFileSync(join(dir, 'crlnumber'), '1000\n');
  const config = join(dir, 'openssl-ca.cnf');
  writeFileSync(
    config,
    [
      '[ ca ]',
      'default_ca = CA_default',
      '[ CA_default ]',
      `dir = ${dir}`,
      'database = $dir/index.txt',
      'new_certs_dir = $dir/newcerts',
      'certificate = $dir/ca.pem',
      'private_key = $dir/ca.key',
      'crlnumber = $dir/crlnumber',
      'default_md = sha256',
      'default_crl_days = 1',
      'policy = policy_any',
      '[ policy_any ]',
      'commonName = optional',
      '',
    ].join('\n'),
  );
  let count = 0;
  const run = (args: string[]) =>
    execFileSync('openssl', ['ca', '-config', config, '-batch', ...args], { stdio: 'pipe' });
  return {
    dir,
    revoke(certPem, reason = 'keyCompromise') {
      const file = join(dir, `revoke-${++count}.pem`);
      writeFileSync(file, certPem);
      run(['-revoke', file, '-crl_reason', reason]);
    },
    gencrl(name, options = {}) {
      const pem = join(dir, `${name}.crl.pem`);
      run([
        '-gencrl',
        '-out',
        pem,
        ...(options.lastUpdate ? ['-crl_lastupdate', options.lastUpdate] : []),
        ...(options.nextUpdate ? ['-crl_nextupdate', options.nextUpdate] : []),
      ]);
      if (!options.der) return pem;
      const der = join(dir, `${name}.crl.der`);
      execFileSync('openssl', ['crl', '-in', pem, '-outform', 'DER', '-out', der], { stdio: 'pipe' });
      return der;
    },
  };
}

/** `openssl crl -text` of a CRL file, for messages. */
export function crlText(path: string): string {
  return execFileSync('openssl', [
    'crl',
    '-in',
    path,
    '-noout',
    '-text',
    ...(path.endsWith('.der') ? ['-inform', 'DER'] : []),
  ]).toString();
}

export const readCrl = (path: string) => readFileSync(path);
