import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { request } from 'undici';
import { type ClusterGateway, startClusterGateway } from '../helpers/cluster-gateway.ts';
import { curlViaGateway } from '../helpers/curl.ts';
import { startFixtureTargets, startGatewayFixture } from '../helpers/gateway-fixture.ts';
import { runHandshakes } from '../helpers/hostile-clients.ts';
import { freePort, listenerPort, listeningSocketsOn } from '../helpers/loopback-ports.ts';
import { pollUntil, waitUntil } from '../helpers/poll-until.ts';
import { writeTestConfig } from '../helpers/test-gateway.ts';
import { createTestPki } from '../helpers/test-pki.ts';
import { openTunnel } from '../helpers/tunnel-client.ts';

const repo = new URL('../..', import.meta.url).pathname;

describe('graceful drain', () => {
  it('goes unready, stops accepting, closes tunnels at the deadline, counts them and flushes audit', async () => {
    let auditPath = '';
    const fixture = await startGatewayFixture(
      ({ pki }) => {
        auditPath = join(pki.dir, 'drain-audit.ndjson');
        return {
          listeners: [{ name: 'egress', listen: '127.0.0.1:0', mode: 'connect' }],
          rules: [{ name: 'all', to: { cidrs: ['127.0.0.0/8'] }, action: 'allow' }],
          admin: { listen: '127.0.0.1:0', watch: false },
          audit: { sinks: [{ type: 'file', path: auditPath, format: 'ecs' }] },
        };
      },
      { httpEchoes: [], tcpEchoes: 1 },
    );
    const { pki, gw } = fixture;
    const echo = { port: fixture.tcpEchoPort };
    try {
      const client = await pki.workload('bookinfo', 'productpage');
      const tunnel = await openTunnel(gw.port('egress'), client, pki.rootPath, `127.0.0.1:${echo.port}`);
      tunnel.socket.write('before');
      await tunnel.waitFor(6);
      const admin = `http://127.0.0.1:${gw.gateway.adminAddress?.port}`;
      const closing = gw.gateway.close(700);
      await new Promise((r) => setTimeout(r, 100));
      const ready = await request(`${admin}/readyz`);
      assert.equal(ready.statusCode, 503);
      assert.deepEqual(((await ready.body.json()) as { reasons: string[] }).reasons, ['draining']);
      await assert.rejects(
        openTunnel(gw.port('egress'), client, pki.rootPath, `127.0.0.1:${echo.port}`),
        'no new connections while draining',
      );
      tunnel.socket.write('during');
      assert.equal(
        (await tunnel.waitFor(12)).toString(),
        'beforeduring',
        'the open tunnel still works during the drain',
      );
      const { forcedClosed } = await closing;
      assert.equal(forcedClosed, 1);
      assert.ok(tunnel.socket.destroyed || tunnel.socket.readableEnded);
      const closed = gw.records.find((r) => r.action === 'egress-closed');
      assert.ok(closed, 'the force-closed tunnel published its close record');
      assert.equal(closed.bytesFromClient, 12);
      // The gateway waited for that record before flushing and closing the sink: it is in the file.
      const written = readFileSync(auditPath, 'utf8')
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as { event: { action: string } });
      assert.ok(written.some((r) => r.event.action === 'egress-permitted'));
      assert.ok(
        written.some((r) => r.event.action === 'egress-closed'),
        'the close record reached the sink before it was closed',
      );
    } finally {
      await fixture.close();
    }
  });
});

describe('shutdown with a stalled log collector', () => {
  it('exits on SIGTERM even when nobody reads its stdout', async () => {
    const pki = await createTestPki();
    const configPath = writeTestConfig(pki, {
      listeners: [{ name: 'egress', listen: '127.0.0.1:0', mode: 'connect' }],
      timeouts: { drain: '1s' },
      admin: { listen: 'off', watch: false },
      audit: { sinks: [{ type: 'stdout', format: 'ecs' }] },
    });
    const dir = dirname(configPath);
    const child = spawn(process.execPath, [join(repo, 'bin/egress-gateway.js'), 'serve', '--config', configPath], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout?.pause(); // the log collector is stuck: its pipe fills up
    let stderr = '';
    child.stderr?.on('data', (chunk) => {
      stderr += chunk;
    });
    try {
      await waitUntil(
        () => /listener egress/.test(stderr) || child.exitCode !== null,
        30_000,
        () => `the gateway logs its listener: ${stderr}`,
      );
      assert.match(stderr, /listener egress/, `the gateway did not start: ${stderr}`);
      const port = listenerPort(stderr, 'egress');
      const refused = await pki.workload('other', 'x');
      // About 2 KB of ECS per refusal: 150 of them overflow the 64 KiB pipe. Four curls at a time:
      // only the count matters, not the order.
      await runHandshakes(150, 4, () => curlViaGateway(port, refused, pki.rootPath, 'http://127.0.0.1:1/', ['-p']));
      const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      assert.equal(await exited, 0);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
      pki.cleanup();
    }
  });
});

describe('serve --workers', () => {
  // A cluster worker's start-up canary once listened on port 0 through the primary: the primary
  // counted it as the worker's listener ("2 workers serving" before the egress port was bound) and
  // could hand its connection to the other worker. Workers now say when they serve.
  it('shares the listeners across workers, aggregates metrics, reloads and drains every worker', async () => {
    // PKI and target from the fixture; the gateway is a child process (a cluster), not startTestGateway.
    const targets = await startFixtureTargets();
    const { pki } = targets;
    const egressPort = await freePort(); // each worker listens itself: the port must be known up front
    const configPath = writeTestConfig(pki, {
      listeners: [{ name: 'egress', listen: `127.0.0.1:${egressPort}`, mode: 'connect', snat: '127.0.0.2' }],
      rules: [
        { name: 'bookinfo', from: { namespaces: ['bookinfo'] }, to: { cidrs: ['127.0.0.0/8'] }, action: 'allow' },
      ],
      admin: { listen: '127.0.0.1:0', watch: false },
    });
    const dir = dirname(configPath);
    let cluster: ClusterGateway | undefined;
    try {
      cluster = await startClusterGateway(configPath, 2);
      const { child, adminPort, stderr } = cluster;
      // The primary holds the one listening socket and hands connections to the workers.
      assert.equal(listeningSocketsOn(egressPort), 1, 'one listening socket, in the primary');
      const client = await pki.workload('bookinfo', 'productpage');
      const url = `http://127.0.0.1:${targets.echoPort}/`;
      for (let i = 0; i < 6; i++) {
        const result = await curlViaGateway(egressPort, client, pki.rootPath, url, ['-p']);
        assert.equal(result.code, 0, `curl ${i + 1} through the cluster: ${result.stderr}\ngateway: ${stderr()}`);
        assert.equal(JSON.parse(result.stdout).peerAddress, '127.0.0.2');
      }
      const metrics = await (await request(`http://127.0.0.1:${adminPort}/metrics`)).body.text();
      assert.match(
        metrics,
        /^egw_connections_total\{listener="egress",decision="permitted"\} 6$/m,
        'counts from both workers are summed',
      );
      const stats = (await (await request(`http://127.0.0.1:${adminPort}/stats`)).body.json()) as {
        workers: Array<{ pid: number }>;
      };
      assert.equal(stats.workers.length, 2);
      const running = (await (await request(`http://127.0.0.1:${adminPort}/config`)).body.json()) as {
        workers: number;
        pendingRestart: string[];
      };
      assert.equal(running.workers, 2, 'the worker count in effect (--workers 2), not the file default of 1');
      assert.deepEqual(running.pendingRestart, []);
      const reload = await request(`http://127.0.0.1:${adminPort}/reload`, { method: 'POST' });
      const reloadBody = (await reload.body.json()) as { ok: boolean; details: unknown[] };
      assert.equal(reload.statusCode, 200);
      assert.equal(reloadBody.details.length, 2, 'every worker reloaded');
      const ready = await request(`http://127.0.0.1:${adminPort}/readyz`);
      assert.equal(ready.statusCode, 200);
      await ready.body.dump();

      // A broken edit is refused by reload, and a worker that dies afterwards is replaced from
      // the last good configuration, not from the broken file.
      writeFileSync(configPath, 'listeners: [broken');
      const refused = await request(`http://127.0.0.1:${adminPort}/reload`, { method: 'POST' });
      assert.equal(refused.statusCode, 422);
      await refused.body.dump();
      process.kill(stats.workers[0]?.pid as number, 'SIGKILL');
      const readyAgain = await pollUntil(
        async () => {
          const probe = await request(`http://127.0.0.1:${adminPort}/readyz`);
          await probe.body.dump();
          return probe.statusCode === 200 && /starting a replacement/.test(stderr());
        },
        Boolean,
        20_000,
        () => `a replacement worker to serve: ${stderr()}`,
        250,
      );
      assert.ok(readyAgain, `the replacement worker serves again: ${stderr()}`);
      const after = await curlViaGateway(egressPort, client, pki.rootPath, url, ['-p']);
      assert.equal(JSON.parse(after.stdout).peerAddress, '127.0.0.2');
      const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      assert.equal(await exited, 0);
      assert.match(stderr(), /SIGTERM: draining 2 workers/);
    } finally {
      await cluster?.stop();
      await targets.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
