import 'reflect-metadata';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { webcrypto } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { join } from 'node:path';
import { connect } from 'node:tls';
import * as x509 from '@peculiar/x509';
import { exportPrivateKeyPem } from '../../src/pki/key-pair.ts';
import { listenerPort } from './loopback-ports.ts';

const repo = new URL('../..', import.meta.url).pathname;
const MARKER = Buffer.from('NONCE-NONCE-NONCE-NONCE!');

/**
 * Self-signed junk certificates of about `bytes` bytes, each with a different nonce (so a
 * fingerprint-keyed cache sees a new certificate every time). One is minted; the others patch the
 * nonce in its DER, which breaks its self-signature, which no refusal path should need anyway.
 */
export async function junkCertificates(bytes: number): Promise<{ keyPem: string; next(): string }> {
  const algorithm = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = (await webcrypto.subtle.generateKey(algorithm, true, ['sign', 'verify'])) as CryptoKeyPair;
  const junk = Buffer.concat([MARKER, Buffer.alloc(bytes, 0x41)]);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: 'CN=junk',
    keys,
    signingAlgorithm: algorithm,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 3_600_000),
    extensions: [new x509.Extension('1.3.6.1.4.1.55555.1', false, junk)],
  });
  const der = Buffer.from(cert.rawData);
  const at = der.indexOf(MARKER);
  let counter = 0;
  return {
    keyPem: await exportPrivateKeyPem(keys.privateKey),
    next() {
      const copy = Buffer.from(der);
      copy.write(`${process.pid}-${counter++}`.padEnd(MARKER.length, '.'), at, 'latin1');
      return `-----BEGIN CERTIFICATE-----\n${copy.toString('base64').replace(/(.{64})/g, '$1\n')}\n-----END CERTIFICATE-----\n`;
    },
  };
}

/**
 * The look-alike chain of issue 9: `count` self-issued CA certificates named CN=X that all carry
 * and are signed by `caKeyPath` (so each verifies every other), plus a P-256 leaf with a SPIFFE
 * URI SAN signed by the same key. Minted with the openssl CLI. Returns PEM paths.
 */
export function lookAlikeChain(dir: string, caKeyPath: string, count = 8): { chainPath: string; leafKeyPath: string } {
  const run = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  const caExt = join(dir, 'ca.ext');
  writeFileSync(caExt, 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n');
  const pems: string[] = [];
  for (let i = 0; i < count; i++) {
    const out = join(dir, `look-alike-${i}.pem`);
    run(
      ['req', '-x509', '-new', '-key', caKeyPath, '-subj', '/CN=X', '-days', '1', '-set_serial', String(i + 1)]
        .concat(['-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'])
        .concat(['-out', out]),
    );
    pems.push(readFileSync(out, 'utf8'));
  }
  const leafKeyPath = join(dir, 'leaf.key');
  run(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', leafKeyPath]);
  run(['req', '-new', '-key', leafKeyPath, '-subj', '/O=look-alike', '-out', join(dir, 'leaf.csr')]);
  const leafExt = join(dir, 'leaf.ext');
  writeFileSync(
    leafExt,
    'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nsubjectAltName=critical,URI:spiffe://cluster.local/ns/evil/sa/x\n',
  );
  run(
    ['x509', '-req', '-in', 'leaf.csr', '-CA', 'look-alike-0.pem', '-CAkey', caKeyPath, '-set_serial', '99'].concat([
      '-days',
      '1',
      '-extfile',
      leafExt,
      '-out',
      'leaf.pem',
    ]),
  );
  const chainPath = join(dir, 'look-alike-chain.pem');
  writeFileSync(chainPath, readFileSync(join(dir, 'leaf.pem'), 'utf8') + pems.join(''));
  return { chainPath, leafKeyPath };
}

/**
 * One TLS client handshake with this certificate chain, from `localAddress` if given (a loopback
 * alias such as 127.0.0.11); resolves when the gateway closes it (bounded).
 */
export function hostileHandshake(
  port: number,
  certPem: string | Buffer,
  keyPem: string | Buffer,
  localAddress?: string,
): Promise<string> {
  return new Promise((resolve) => {
    // tls.connect has no localAddress option: bind the TCP socket first when one is asked for.
    const tcp = localAddress ? tcpConnect({ host: '127.0.0.1', port, localAddress }) : undefined;
    const target = tcp ? { socket: tcp } : { host: '127.0.0.1', port };
    const socket = connect({ ...target, cert: certPem, key: keyPem, rejectUnauthorized: false });
    const timer = setTimeout(() => finish('timeout'), 15_000);
    const finish = (how: string) => {
      clearTimeout(timer);
      socket.destroy();
      tcp?.destroy();
      resolve(how);
    };
    socket.once('error', (error: NodeJS.ErrnoException) => finish(error.code ?? 'error'));
    socket.once('close', () => finish('closed'));
    socket.resume();
  });
}

/** Runs `total` handshakes, `parallel` at a time. */
export async function runHandshakes(total: number, parallel: number, one: () => Promise<unknown>): Promise<void> {
  let started = 0;
  const lane = async () => {
    while (started < total) {
      started += 1;
      await one();
    }
  };
  await Promise.all(Array.from({ length: parallel }, lane));
}

export interface GatewayChild {
  readonly child: ChildProcess;
  readonly pid: number;
  stderr(): string;
  /** The port listener `name` bound (configs can say `:0`). */
  port(name: string): number;
  /** Resident set and its peak (VmHWM), in bytes, from /proc. */
  memory(): { rss: number; peak: number };
  /** User + system CPU time of the process so far, in milliseconds. */
  cpuMs(): number;
  stop(): Promise<void>;
}

/** Starts `egress-gateway serve` as a child process, so its RSS and CPU can be read from /proc. */
export async function startGatewayChild(configPath: string, nodeArgs: readonly string[] = []): Promise<GatewayChild> {
  const child = spawn(
    process.execPath,
    [...nodeArgs, join(repo, 'bin/egress-gateway.js'), 'serve', '--config', configPath],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  let text = '';
  child.stderr?.on('data', (chunk) => {
    text += chunk;
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const deadline = Date.now() + 30_000;
  while (!/listener egress/.test(text)) {
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`gateway did not start: ${text}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const pid = child.pid as number;
  return {
    child,
    pid,
    stderr: () => text,
    port: (name) => listenerPort(text, name),
    memory() {
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      const kb = (key: string) => Number(new RegExp(`${key}:\\s+(\\d+)`).exec(status)?.[1] ?? Number.NaN) * 1024;
      return { rss: kb('VmRSS'), peak: kb('VmHWM') };
    },
    cpuMs() {
      const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
      const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14, 15)
      return (ticks * 1000) / 100; // USER_HZ is 100 on Linux
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
