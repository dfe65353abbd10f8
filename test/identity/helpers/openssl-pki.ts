import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** A certificate minted by the openssl CLI: its files and its parsed form. */
export interface OpensslCert {
  readonly name: string;
  readonly certPath: string;
  readonly keyPath: string;
  readonly pem: string;
  readonly x509: X509Certificate;
}

const openssl = (args: string[], cwd: string) => execFileSync('openssl', args, { cwd, stdio: 'pipe' });

function key(dir: string, name: string): string {
  const keyPath = join(dir, `${name}.key`);
  openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', keyPath], dir);
  return keyPath;
}

function loaded(name: string, certPath: string, keyPath: string): OpensslCert {
  const pem = readFileSync(certPath, 'utf8');
  return { name, certPath, keyPath, pem, x509: new X509Certificate(pem) };
}

/** A self-signed root CA. */
export function opensslRoot(dir: string, name: string): OpensslCert {
  const keyPath = key(dir, name);
  const certPath = join(dir, `${name}.pem`);
  const ext = join(dir, `${name}.ext`);
  writeFileSync(
    ext,
    [
      '[v3]',
      'basicConstraints = critical,CA:TRUE',
      'keyUsage = critical,keyCertSign,cRLSign',
      'subjectKeyIdentifier = hash',
      '',
    ].join('\n'),
  );
  openssl(
    ['req', '-x509', '-new', '-key', keyPath, '-subj', `/O=test/CN=${name}`, '-days', '2', '-out', certPath].concat([
      '-config',
      ext,
      '-extensions',
      'v3',
    ]),
    dir,
  );
  return loaded(name, certPath, keyPath);
}

/**
 * Issues a certificate from `issuer` with exactly the extension lines given (openssl x509 -extfile
 * syntax, e.g. `1.2.3.4=critical,ASN1:NULL` or `nameConstraints=critical,permitted;URI:cluster.local`).
 */
export function opensslIssue(
  dir: string,
  issuer: OpensslCert,
  name: string,
  extensions: readonly string[],
): OpensslCert {
  const keyPath = key(dir, name);
  const csr = join(dir, `${name}.csr`);
  const certPath = join(dir, `${name}.pem`);
  const ext = join(dir, `${name}.ext`);
  writeFileSync(
    ext,
    `${['subjectKeyIdentifier = hash', 'authorityKeyIdentifier = keyid', ...extensions].join('\n')}\n`,
  );
  openssl(['req', '-new', '-key', keyPath, '-subj', `/O=test/CN=${name}`, '-out', csr], dir);
  openssl(
    ['x509', '-req', '-in', csr, '-CA', issuer.certPath, '-CAkey', issuer.keyPath, '-CAcreateserial'].concat([
      '-days',
      '1',
      '-sha256',
      '-extfile',
      ext,
      '-out',
      certPath,
    ]),
    dir,
  );
  return loaded(name, certPath, keyPath);
}

export const CA_EXTENSIONS = ['basicConstraints = critical,CA:TRUE', 'keyUsage = critical,keyCertSign,cRLSign'];

/** X.509-SVID leaf extensions for one SPIFFE ID (plus any extra SAN entries). */
export function svidExtensions(spiffeId: string, extraSans: readonly string[] = []): string[] {
  return [
    'basicConstraints = critical,CA:FALSE',
    'keyUsage = critical,digitalSignature',
    'extendedKeyUsage = clientAuth,serverAuth',
    `subjectAltName = critical,${[`URI:${spiffeId}`, ...extraSans].join(',')}`,
  ];
}

/** `openssl verify` of a leaf against a root with the intermediate untrusted: OpenSSL's own verdict. */
export function opensslVerify(root: OpensslCert, intermediate: OpensslCert, leaf: OpensslCert): string {
  try {
    return execFileSync(
      'openssl',
      ['verify', '-CAfile', root.certPath, '-untrusted', intermediate.certPath, leaf.certPath],
      {
        stdio: 'pipe',
      },
    ).toString();
  } catch (error) {
    return `${(error as { stdout?: Buffer }).stdout ?? ''}${(error as { stderr?: Buffer }).stderr ?? ''}`;
  }
}
