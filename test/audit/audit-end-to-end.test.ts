import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import type { SinkStats } from '../../src/audit/sinks/audit-sink.ts';
import { startEchoServer } from '../../src/devtools/echo-server.ts';
import { curlViaGateway } from '../helpers/curl.ts';
import { listenerPort } from '../helpers/loopback-ports.ts';
import { pollUntil } from '../helpers/poll-until.ts';
import { createTestPki, type TestPki, type WrittenLeaf } from '../helpers/test-pki.ts';
import { type HecReceiver, startHecReceiver } from './helpers/hec-receiver.ts';
import { createRsyslogReceiver, type RsyslogReceiver } from './helpers/rsyslog-receiver.ts';
import { createSiemPki, type SiemPki } from './helpers/siem-pki.ts';

const repo = new URL('../..', import.meta.url).pathname;
const TOKEN = 'e2e-hec-token';

type Ecs = {
  event: { id: string; action: string; reason?: string };
  source: { user?: { id: string }; nat?: { ip: string } };
  tls?: { client?: { x509?: { serial_number: string } } };
};

/** Polls `probe` until it yields a value (15 s deadline). */
async function waitUntil<T>(what: string, probe: () => T | undefined, timeoutMs = 15_000): Promise<T> {
  return (await pollUntil(probe, (value) => value !== undefined, timeoutMs, what)) as T;
}

/**
 * The whole pipeline as operators run it: `egress-gateway serve` as a process, with three sinks
 * at once (stdout ECS, syslog CEF over mutual TLS to rsyslogd, Splunk HEC ECS over HTTPS),
 * driven by curl through the proxy. SIGUSR2 prints the delivery ledger; SIGTERM flushes.
 */
describe('audit end to end: one gateway, three sinks, real receivers', () => {
  let pki: TestPki;
  let siem: SiemPki;
  let rsyslog: RsyslogReceiver;
  let hec: HecReceiver;
  let echo: Server;
  let echoPort: number;
  let work: string;
  let port: number;
  let gateway: ChildProcess;
  let stdout = '';
  let stderr = '';
  let bookinfo: WrittenLeaf;
  let other: WrittenLeaf;

  const stdoutRecords = (): Ecs[] =>
    stdout
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Ecs);

  before(async () => {
    pki = await createTestPki();
    siem = await createSiemPki();
    bookinfo = await pki.workload('bookinfo', 'productpage');
    other = await pki.workload('sm-apigw-a', 'default');
    rsyslog = await createRsyslogReceiver({
      tls: { ca: siem.caPath, cert: siem.server.certPath, key: siem.server.keyPath, authMode: 'x509/certvalid' },
    });
    await rsyslog.start();
    hec = await startHecReceiver({ cert: siem.server.certPath, key: siem.server.keyPath, token: TOKEN });
    echo = await startEchoServer('127.0.0.1', 0);
    echoPort = (echo.address() as AddressInfo).port;

    // Sink files are given relative to the working directory, as an operator's config would.
    work = mkdtempSync(join(tmpdir(), 'egw-audit-e2e-'));
    mkdirSync(join(work, 'certs'));
    copyFileSync(siem.caPath, join(work, 'certs/siem-ca.pem'));
    copyFileSync(siem.client.certPath, join(work, 'certs/siem-client.pem'));
    copyFileSync(siem.client.keyPath, join(work, 'certs/siem-client.key'));
    const config = {
      identity: {
        trustDomain: pki.trustDomain,
        trustAnchors: pki.intermediatePath,
        cert: pki.gateway.certPath,
        key: pki.gateway.keyPath,
      },
      listeners: [{ name: 'egress', listen: '127.0.0.1:0', mode: 'connect', snat: '127.0.0.2' }],
      admin: { listen: 'off' }, // no fixed port to collide with tests running in parallel
      rules: [
        {
          name: 'bookinfo-egress',
          from: { namespaces: ['bookinfo'] },
          to: { cidrs: ['127.0.0.0/8'], ports: [echoPort] },
          action: 'allow',
        },
      ],
      audit: {
        sinks: [
          { type: 'stdout', format: 'ecs' },
          {
            type: 'syslog',
            name: 'siem',
            address: `127.0.0.1:${rsyslog.tlsPort}`,
            transport: 'tls',
            ca: 'certs/siem-ca.pem',
            cert: 'certs/siem-client.pem',
            key: 'certs/siem-client.key',
            format: 'cef',
            confirmInterval: '300ms',
          },
          // A long flush interval: these records leave only when SIGTERM flushes the sink.
          {
            type: 'http',
            name: 'splunk',
            url: hec.url,
            token: TOKEN,
            ca: 'certs/siem-ca.pem',
            format: 'ecs',
            batchSize: 100,
            flushInterval: '60s',
          },
        ],
      },
    };
    writeFileSync(join(work, 'gateway.yaml'), stringify(config));
    gateway = spawn(process.execPath, [join(repo, 'bin/egress-gateway.js'), 'serve', '--config', 'gateway.yaml'], {
      cwd: work,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    gateway.stdout?.on('data', (chunk) => {
      stdout += chunk;
    });
    gateway.stderr?.on('data', (chunk) => {
      stderr += chunk;
    });
    // Wait for the log line rather than probing the port: a bare TCP probe is itself audited.
    // The listener binds :0; its start-up line says which port it got.
    await waitUntil(
      'the listener start-up line',
      () =>
        gateway.exitCode === null && /listener egress \([^)]*\) on \S*:\d+[^\n]*\n/.test(stderr) ? true : undefined,
      30_000,
    );
    port = listenerPort(stderr, 'egress');
  });

  after(async () => {
    if (gateway.exitCode === null) gateway.kill('SIGKILL');
    echo.close();
    await hec.close();
    await rsyslog.cleanup();
    rmSync(work, { recursive: true, force: true });
    siem.cleanup();
    pki.cleanup();
  });

  const sinkStats = async (): Promise<Record<string, SinkStats>> => {
    const before = stderr.length;
    gateway.kill('SIGUSR2');
    const line = await waitUntil(
      'the SIGUSR2 stats line',
      () => /audit sinks: (\{.*\})\n/.exec(stderr.slice(before))?.[1],
    );
    return JSON.parse(line);
  };

  it('writes a permitted and a rejected connection, with the SPIFFE ID, to stdout, rsyslog over TLS and HEC at once', async () => {
    const allowed = await curlViaGateway(port, bookinfo, pki.rootPath, `http://127.0.0.1:${echoPort}/e2e`, ['-p']);
    assert.equal(allowed.code, 0, allowed.stderr);
    const refused = await curlViaGateway(port, other, pki.rootPath, `http://127.0.0.1:${echoPort}/e2e`, ['-p', '-v']);
    assert.match(refused.stderr, /< HTTP\/1\.1 403/);

    // stdout: ECS, one JSON document per line.
    const [permitted, closed, rejected] = await waitUntil('three records on stdout', () => {
      const all = stdoutRecords();
      const find = (action: string) => all.find((r) => r.event.action === action);
      const found = [find('egress-permitted'), find('egress-closed'), find('egress-rejected')];
      return found.every(Boolean) ? (found as Ecs[]) : undefined;
    });
    assert.ok(permitted && closed && rejected);
    assert.equal(permitted.source.user?.id, 'spiffe://cluster.local/ns/bookinfo/sa/productpage');
    assert.equal(permitted.source.nat?.ip, '127.0.0.2');
    assert.equal(permitted.tls?.client?.x509?.serial_number, bookinfo.leaf.cert.serialNumber.toUpperCase());
    assert.equal(rejected.source.user?.id, 'spiffe://cluster.local/ns/sm-apigw-a/sa/default');
    assert.equal(rejected.event.reason, 'no rule matched (default deny)');

    // rsyslog over mutual TLS: RFC 5424 with the event ID in structured data, CEF in MSG.
    const messages = await rsyslog.waitFor(
      (all) => [permitted, rejected].every((r) => all.some((m) => m.sd.includes(`id="${r.event.id}"`))),
      15_000,
    );
    const syslogPermitted = messages.find((m) => m.sd.includes(`id="${permitted.event.id}"`));
    const syslogRejected = messages.find((m) => m.sd.includes(`id="${rejected.event.id}"`));
    assert.equal(syslogPermitted?.msgid, 'egress-permitted');
    assert.match(syslogPermitted?.sd ?? '', / spiffe="spiffe:\/\/cluster\.local\/ns\/bookinfo\/sa\/productpage" /);
    assert.match(
      syslogPermitted?.msg ?? '',
      /^CEF:0\|mesh-egress-gateway\|mesh-egress-gateway\|[^|]*\|egress-permitted\|.* act=permit .*suser=spiffe:\/\/cluster\.local\/ns\/bookinfo\/sa\/productpage /,
    );
    assert.match(syslogPermitted?.msg ?? '', / sourceTranslatedAddress=127\.0\.0\.2 /);
    assert.equal(syslogRejected?.msgid, 'egress-rejected');
    assert.match(
      syslogRejected?.msg ?? '',
      / act=reject .*reason=no rule matched \(default deny\) cat=EGW_POLICY_DENIED .*suser=spiffe:\/\/cluster\.local\/ns\/sm-apigw-a\/sa\/default /,
    );

    // The ledger (SIGUSR2): stdout and syslog delivered everything; HEC holds its batch.
    let ledger = await sinkStats();
    for (let i = 0; i < 40 && ledger.siem?.delivered !== ledger.siem?.received; i += 1) {
      await new Promise((r) => setTimeout(r, 100));
      ledger = await sinkStats();
    }
    assert.deepEqual(Object.keys(ledger), ['stdout#0', 'siem', 'splunk']);
    for (const name of ['stdout#0', 'siem'] as const) {
      const s = ledger[name] as SinkStats;
      assert.ok(s.received >= 3, `${name}: ${JSON.stringify(s)}`);
      assert.deepEqual([s.delivered, s.dropped, s.queued], [s.received, 0, 0], `${name}: ${JSON.stringify(s)}`);
    }
    const splunk = ledger.splunk as SinkStats;
    assert.equal(hec.requests.length, 0, 'the HEC batch waits for its flush interval');
    assert.deepEqual([splunk.delivered, splunk.queued], [0, splunk.received]);
  });

  it('flushes every sink on SIGTERM: the held HEC batch arrives with the same event IDs, and the gateway exits 0', async () => {
    const ids = stdoutRecords().map((r) => r.event.id);
    const exited = new Promise<number | null>((resolve) => gateway.once('exit', (code) => resolve(code)));
    gateway.kill('SIGTERM');
    assert.equal(await exited, 0, stderr);
    assert.equal(hec.requests.length, 1, 'one batch');
    const request = hec.requests[0];
    assert.equal(request?.headers.authorization, `Splunk ${TOKEN}`);
    const envelopes = hec.accepted() as Array<{ event: Ecs }>;
    assert.deepEqual(
      envelopes.map((e) => e.event.event.id),
      ids,
      'HEC received exactly the records stdout showed, in order',
    );
    const rejected = envelopes.find((e) => e.event.event.action === 'egress-rejected');
    assert.equal(rejected?.event.source.user?.id, 'spiffe://cluster.local/ns/sm-apigw-a/sa/default');
    assert.doesNotMatch(stderr, /EGW_AUDIT_RECORDS_DROPPED/);
  });
});
