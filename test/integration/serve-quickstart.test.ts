import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect } from 'node:tls';
import { startEchoServer } from '../../src/devtools/echo-server.ts';
import { listenerPort } from '../helpers/loopback-ports.ts';
import { waitUntil } from '../helpers/poll-until.ts';
import { runCommand } from '../helpers/run-command.ts';

const repo = new URL('../..', import.meta.url).pathname;

/**
 * The README quick start, as a newcomer runs it: `egress-gateway serve` on the shipped
 * config/gateway.yaml in a fresh directory (ports moved to :0 so tests can run anywhere; read back from its log).
 */
describe('serve with the shipped configuration', () => {
  let work: string;
  let gateway: ChildProcess;
  let stderr = '';
  let stdout = '';
  let egressPort: number;
  let echo: Server;
  let echoPort: number;

  before(async () => {
    work = mkdtempSync(join(tmpdir(), 'egw-quickstart-'));
    mkdirSync(join(work, 'config'));
    echo = await startEchoServer('127.0.0.1', 0);
    echoPort = (echo.address() as AddressInfo).port;
    const shipped = readFileSync(join(repo, 'config/gateway.yaml'), 'utf8');
    assert.match(shipped, /127\.0\.0\.1:3128/);
    writeFileSync(
      join(work, 'config/gateway.yaml'),
      shipped
        .replace('127.0.0.1:3128', '127.0.0.1:0')
        .replace('127.0.0.1:3129', '127.0.0.1:0')
        .replace('127.0.0.1:9901', '127.0.0.1:0')
        .replace('ports: [8080, 8443]', `ports: [${echoPort}]`),
    );
    gateway = spawn(
      process.execPath,
      [join(repo, 'bin/egress-gateway.js'), 'serve', '--config', 'config/gateway.yaml'],
      { cwd: work, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    gateway.stdout?.on('data', (chunk) => {
      stdout += chunk;
    });
    gateway.stderr?.on('data', (chunk) => {
      stderr += chunk;
    });
    await waitUntil(
      () => {
        if (gateway.exitCode !== null) throw new Error(`gateway exited: ${stderr}`);
        // The "Try it" lines come last, after the listeners and the admin API are up.
        return /admin API on/.test(stderr) && /Try it/.test(stderr);
      },
      30_000,
      () => `the gateway to start: ${stderr}`,
      100,
    );
    egressPort = listenerPort(stderr, 'egress');
  });
  after(() => {
    if (gateway.exitCode === null) gateway.kill('SIGKILL');
    echo.close();
    rmSync(work, { recursive: true, force: true });
  });

  const curl = (workload: string) =>
    runCommand(
      'curl',
      [
        '-sS',
        '-p',
        '--max-time',
        '10',
        '--proxy',
        `https://127.0.0.1:${egressPort}`,
        '--proxy-cacert',
        'certs/dev/root-cert.pem',
        '--proxy-cert',
        `certs/dev/workloads/${workload}/cert.pem`,
        '--proxy-key',
        `certs/dev/workloads/${workload}/key.pem`,
        '-v',
        `http://127.0.0.1:${echoPort}/`,
      ],
      { cwd: work },
    );

  it('generates the dev PKI on first run and prints how to try it', () => {
    assert.match(stderr, /generated a development PKI/);
    assert.match(stderr, /Try it/);
    for (const file of [
      'root-cert.pem',
      'ca-cert.pem',
      'ca-key.pem',
      'cert-chain.pem',
      'gateway/cert.pem',
      'workloads/bookinfo-productpage/key.pem',
      'workloads/sm-apigw-a/cert.pem',
    ]) {
      assert.ok(readFileSync(join(work, 'certs/dev', file)).length > 0, file);
    }
  });

  it('lets the bookinfo workload reach a local target, which sees the SNAT address', async () => {
    const result = await curl('bookinfo-productpage');
    assert.equal(result.code, 0, result.stderr);
    assert.equal(JSON.parse(result.stdout).peerAddress, '127.0.0.2');
  });

  it('refuses the other namespace with 403', async () => {
    const result = await curl('sm-apigw-a');
    assert.match(result.stderr, /< HTTP\/1\.1 403/);
  });

  it('writes ECS audit records to stdout', async () => {
    await waitUntil(
      () => /egress-rejected/.test(stdout),
      5000,
      () => `an egress-rejected record on stdout: ${stdout}`,
    );
    const records = stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line));
    const permitted = records.find((r) => r.event.action === 'egress-permitted');
    assert.equal(permitted.source.user.id, 'spiffe://cluster.local/ns/bookinfo/sa/productpage');
    assert.equal(permitted.orchestrator.namespace, 'bookinfo');
    assert.equal(permitted.source.nat.ip, '127.0.0.2');
    assert.equal(permitted.rule.name, 'bookinfo-egress');
    const rejected = records.find((r) => r.event.action === 'egress-rejected');
    assert.equal(rejected.source.user.id, 'spiffe://cluster.local/ns/sm-apigw-a/sa/default');
    assert.equal(rejected.event.reason, 'no rule matched (default deny)');
  });

  it('on SIGTERM stops accepting but lets an open tunnel finish, then exits 0', async () => {
    const socket = connect({
      host: '127.0.0.1',
      port: egressPort,
      ca: readFileSync(join(work, 'certs/dev/root-cert.pem')),
      cert: readFileSync(join(work, 'certs/dev/workloads/bookinfo-productpage/cert.pem')),
      key: readFileSync(join(work, 'certs/dev/workloads/bookinfo-productpage/key.pem')),
      servername: 'localhost',
    });
    let received = '';
    socket.on('data', (chunk) => {
      received += chunk;
    });
    await new Promise((r) => socket.once('secureConnect', r));
    socket.write(`CONNECT 127.0.0.1:${echoPort} HTTP/1.1\r\nHost: 127.0.0.1:${echoPort}\r\n\r\n`);
    await waitUntil(
      () => received.includes('\r\n\r\n'),
      5_000,
      () => `the CONNECT response (got: ${received})`,
      20,
    );
    assert.match(received, /^HTTP\/1\.1 200/);
    const exited = new Promise<number | null>((resolve) => gateway.once('exit', (code) => resolve(code)));
    gateway.kill('SIGTERM');
    await waitUntil(
      () => /SIGTERM: closing listeners/.test(stderr),
      10_000,
      () => `the SIGTERM log line: ${stderr}`,
      20,
    );
    const refused = await runCommand('curl', [
      '-sS',
      '--max-time',
      '5',
      '--proxy',
      `https://127.0.0.1:${egressPort}`,
      '-k',
      'http://127.0.0.1:1/',
    ]);
    assert.match(refused.stderr, /Failed to connect|Connection refused/, 'the listener is closed');
    received = '';
    socket.write('GET /after-sigterm HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    await waitUntil(
      () => received.includes('/after-sigterm'),
      5000,
      () => `the echo after SIGTERM: ${received}`,
      20,
    );
    assert.match(received, /"url":"\/after-sigterm"/, 'the open tunnel still carries data after SIGTERM');
    socket.end();
    assert.equal(await exited, 0);
  });
});
