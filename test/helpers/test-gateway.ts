import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { stringify } from 'yaml';
import { type AuditRecord, subscribeAudit } from '../../src/core/audit-event.ts';
import { type Gateway, type StartOptions, startGateway } from '../../src/main.ts';
import type { TestPki } from './test-pki.ts';

export interface TestGatewayOptions {
  /** The trust anchor file (default: the PKI's intermediate alone). */
  readonly anchors?: string;
  readonly faultProbe?: StartOptions['faultProbe'];
}

export interface TestGateway {
  readonly gateway: Gateway;
  readonly configPath: string;
  readonly records: AuditRecord[];
  port(listener: string): number;
  /** Resolves with the first record that satisfies `predicate` (waits up to `timeoutMs`). */
  waitForRecord(predicate: (r: AuditRecord) => boolean, timeoutMs?: number): Promise<AuditRecord>;
  close(): Promise<void>;
}

/**
 * Writes a gateway configuration for the test PKI into a new temp directory: the PKI's identity
 * (anchor: the intermediate alone), no audit sink, then `config`'s keys on top. Returns its path.
 */
export function writeTestConfig(
  pki: TestPki,
  config: Record<string, unknown>,
  options: { anchors?: string } = {},
): string {
  const configPath = join(mkdtempSync(join(tmpdir(), 'egw-config-')), 'gateway.yaml');
  const full = {
    identity: {
      trustDomain: pki.trustDomain,
      trustAnchors: options.anchors ?? pki.intermediatePath,
      cert: pki.gateway.certPath,
      key: pki.gateway.keyPath,
    },
    audit: { sinks: [] },
    ...config,
  };
  writeFileSync(configPath, stringify(full));
  return configPath;
}

/**
 * Starts a real gateway on loopback from a config written to a temp file. Listeners default to
 * port 0; audit records are captured from the data path's channel (no sink configured).
 */
export async function startTestGateway(
  pki: TestPki,
  config: Record<string, unknown>,
  options: TestGatewayOptions = {},
): Promise<TestGateway> {
  const configPath = writeTestConfig(pki, config, options);
  const dir = dirname(configPath);
  const records: AuditRecord[] = [];
  const waiters: Array<{ predicate: (r: AuditRecord) => boolean; resolve: (r: AuditRecord) => void }> = [];
  const unsubscribe = subscribeAudit((record) => {
    records.push(record);
    for (const waiter of [...waiters]) {
      if (waiter.predicate(record)) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve(record);
      }
    }
  });
  const gateway = await startGateway({
    configPath,
    log: () => {},
    adminListen: '127.0.0.1:0',
    processMetrics: false,
    ...(options.faultProbe ? { faultProbe: options.faultProbe } : {}),
  });
  return {
    gateway,
    configPath,
    records,
    port: (name) => {
      const address = gateway.addresses.get(name);
      if (!address) throw new Error(`no listener ${name}`);
      return address.port;
    },
    waitForRecord(predicate, timeoutMs = 5000) {
      const found = records.find(predicate);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const waiter = {
          predicate,
          resolve: (r: AuditRecord) => {
            clearTimeout(timer);
            resolve(r);
          },
        };
        const timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(waiter), 1);
          reject(
            new Error(
              `no matching audit record within ${timeoutMs} ms; have: ${records.map((r) => `${r.action}/${r.code ?? ''}`).join(', ')}`,
            ),
          );
        }, timeoutMs);
        waiters.push(waiter);
      });
    },
    async close() {
      unsubscribe();
      await gateway.close(500);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
