import assert from 'node:assert/strict';
import {
  chmodSync,
  copyFileSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse, stringify } from 'yaml';
import { startEchoServer } from '../../src/devtools/echo-server.ts';
import { curlViaGateway } from '../helpers/curl.ts';
import { freePort } from '../helpers/loopback-ports.ts';
import { startTcpEchoServer } from '../helpers/tcp-echo-server.ts';
import { createTestPki, type TestPki } from '../helpers/test-pki.ts';
import { openTunnel } from '../helpers/tunnel-client.ts';
import { BASE_IMAGE, docker, dockerOk, dockerSkipReason } from './helpers/docker-engine.ts';
import type { JsonDoc } from './helpers/validate-manifests.ts';

/*
 * The image, built by the classic builder (offline: no `# syntax=` frontend) from the air-gapped
 * base of scripts/build-base-image.sh, and run for real with host networking on loopback.
 * EGW_IMAGE names an image CI already built; otherwise this builds mesh-egress-gateway:test.
 */
const ROOT = new URL('../../', import.meta.url).pathname;
const skip = await dockerSkipReason();
const image = process.env.EGW_IMAGE ?? 'mesh-egress-gateway:test';

function listFiles(dir: string, base = dir): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? listFiles(path, base) : [relative(base, path)];
  });
}

/** Bare package names that src/ loads at run time (type-only imports are erased by tsc). */
function runtimePackages(): Set<string> {
  const packages = new Set<string>();
  for (const file of listFiles(join(ROOT, 'src')).filter((f) => f.endsWith('.ts'))) {
    const source = readFileSync(join(ROOT, 'src', file), 'utf8');
    const specifiers = [
      ...[...source.matchAll(/^\s*(?:import|export)\s+(?!type\s)[^'";]*?\bfrom\s+'([^']+)'/gm)].map((m) => m[1]),
      ...[...source.matchAll(/^\s*import\s+'([^']+)'/gm)].map((m) => m[1]),
      ...[...source.matchAll(/\bimport\(\s*'([^']+)'\s*\)/g)].map((m) => m[1]),
    ];
    for (const specifier of specifiers) {
      if (!specifier || specifier.startsWith('.') || specifier.startsWith('node:')) continue;
      const parts = specifier.split('/');
      packages.add(specifier.startsWith('@') ? parts.slice(0, 2).join('/') : (parts[0] as string));
    }
  }
  return packages;
}

describe('container image: what the build relies on', () => {
  it('everything src/ imports at run time is a production dependency (the image prunes the rest)', () => {
    const dependencies = new Set(
      Object.keys(JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).dependencies),
    );
    const used = runtimePackages();
    assert.ok(used.has('yaml') && used.has('zod'), [...used].join(', '));
    for (const name of used)
      assert.ok(dependencies.has(name), `src imports ${name} at run time, not in "dependencies"`);
    assert.ok(!dependencies.has('tsx') && !dependencies.has('typescript'), 'no TypeScript tooling at run time');
  });

  it('the Dockerfile needs no registry frontend and starts the CLI the way Kubernetes and compose do', () => {
    const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
    assert.doesNotMatch(dockerfile, /^#\s*syntax=/m, 'BuildKit would fetch the frontend from Docker Hub');
    const deployment = parse(readFileSync(join(ROOT, 'deploy/kubernetes/deployment.yaml'), 'utf8')) as JsonDoc;
    const compose = parse(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8')) as JsonDoc;
    const cmd = ['serve', '--config', '/etc/egress-gateway/gateway.yaml'];
    assert.match(dockerfile, /^CMD \["serve", "--config", "\/etc\/egress-gateway\/gateway.yaml"\]$/m);
    assert.match(dockerfile, /^USER 1000:1000$/m);
    assert.deepEqual(deployment.spec.template.spec.containers[0].args, cmd);
    assert.equal(deployment.spec.template.spec.securityContext.runAsUser, 1000);
    assert.deepEqual(compose.services.gateway.command, cmd);
    assert.equal(compose.services.gateway.user, '1000:1000');
  });
});

describe('container image: built and run', { skip }, () => {
  let pki: TestPki;
  let dir: string;
  const containers: string[] = [];

  before(
    async () => {
      pki = await createTestPki();
      dir = mkdtempSync(join(tmpdir(), 'egw-image-'));
      if (process.env.EGW_IMAGE) return;
      const base = await docker(['image', 'inspect', BASE_IMAGE]);
      assert.equal(base.code, 0, `no base image ${BASE_IMAGE}: run scripts/build-base-image.sh ${BASE_IMAGE} 24`);
      const build = ['build', '--network', 'host', '--build-arg', `BASE=${BASE_IMAGE}`, '-t', image, ROOT];
      await dockerOk(build, 600_000, { DOCKER_BUILDKIT: '0' });
    },
    { timeout: 660_000 },
  );
  after(async () => {
    for (const id of containers) await docker(['rm', '-f', id]);
    rmSync(dir, { recursive: true, force: true });
    pki.cleanup();
  });

  it('is small above its base and holds compiled JavaScript only, no TypeScript loader', async () => {
    const inspect = JSON.parse(await dockerOk(['image', 'inspect', image]))[0];
    assert.equal(inspect.Config.User, '1000:1000', 'numeric non-root user');
    assert.deepEqual(inspect.Config.Entrypoint, ['node', 'bin/egress-gateway.js']);
    const baseLayers = JSON.parse(await dockerOk(['image', 'inspect', BASE_IMAGE]))[0].RootFS.Layers as string[];
    assert.deepEqual(inspect.RootFS.Layers.slice(0, baseLayers.length), baseLayers, `built on ${BASE_IMAGE}`);
    const sizes = (await dockerOk(['history', '--human=false', '--format', '{{.Size}}', image]))
      .trim()
      .split('\n')
      .map(Number);
    const baseRows = (await dockerOk(['history', '--format', '{{.ID}}', BASE_IMAGE])).trim().split('\n').length;
    const own = sizes.slice(0, sizes.length - baseRows).reduce((a, b) => a + b, 0);
    assert.ok(own > 1_000_000, `own layers hold the app (${own} bytes)`);
    assert.ok(own < 60_000_000, `own layers ${(own / 1e6).toFixed(1)} MB, limit 60 MB`);
    const listing = await dockerOk(['run', '--rm', '--entrypoint', 'sh', image, '-c', 'ls /app; ls /app/node_modules']);
    assert.match(listing, /^dist$/m, 'the compiled CLI is there');
    assert.match(listing, /^fastify$/m, 'production dependencies are there');
    for (const absent of ['src', 'tsx', 'typescript', 'esbuild', '@biomejs'])
      assert.doesNotMatch(listing, new RegExp(`^${absent}$`, 'm'), `${absent} must not be in the image`);
  });

  it('runs read-only with host networking: CONNECT with SNAT, /readyz, and SIGTERM drains an open tunnel, exit 0', async () => {
    const web: Server = await startEchoServer('127.0.0.1', 0);
    const tcpEcho = await startTcpEchoServer();
    try {
      const port = await freePort();
      const adminPort = await freePort();
      const id = await startContainer(port, adminPort);
      const client = await pki.workload('bookinfo', 'productpage');
      const url = `http://127.0.0.1:${(web.address() as AddressInfo).port}/from-container`;
      const viaGateway = await curlViaGateway(port, client, pki.rootPath, url, ['-p']);
      assert.equal(viaGateway.code, 0, `${viaGateway.stderr}\n${await logs(id)}`);
      assert.equal(JSON.parse(viaGateway.stdout).peerAddress, '127.0.0.2', 'the upstream sees the SNAT address');
      const outsider = await curlViaGateway(port, await pki.workload('other', 'x'), pki.rootPath, url, ['-p']);
      assert.notEqual(outsider.code, 0, 'an identity no rule allows is refused');

      const tunnel = await openTunnel(port, client, pki.rootPath, `127.0.0.1:${tcpEcho.port}`);
      tunnel.socket.write('before');
      await tunnel.waitFor(6);
      await dockerOk(['kill', '--signal', 'TERM', id]);
      await pollReadyz(adminPort, 503);
      tunnel.socket.write('during');
      assert.equal((await tunnel.waitFor(12)).toString(), 'beforeduring', 'the open tunnel works during the drain');
      const running = JSON.parse(await dockerOk(['inspect', id]))[0].State.Running;
      assert.equal(running, true, 'the container waits for the tunnel');
      tunnel.close();
      const exit = (await dockerOk(['wait', id], 60_000)).trim();
      assert.equal(exit, '0', await logs(id));
      assert.match(await logs(id), /egress-closed/, 'the drained tunnel got its close record');
    } finally {
      web.close();
      tcpEcho.close();
    }
  });

  /** Config + PKI copies readable by the image user (uid 1000), mounted read-only; returns the container id. */
  async function startContainer(port: number, adminPort: number): Promise<string> {
    const mount = mkdtempSync(join(dir, 'mount-'));
    for (const [from, to] of [
      [pki.intermediatePath, 'anchors.pem'],
      [pki.gateway.certPath, 'cert.pem'],
      [pki.gateway.keyPath, 'key.pem'],
    ] as const)
      copyFileSync(from, join(mount, to));
    const config = {
      identity: {
        trustDomain: 'cluster.local',
        trustAnchors: '/pki/anchors.pem',
        cert: '/pki/cert.pem',
        key: '/pki/key.pem',
      },
      listeners: [{ name: 'egress', listen: `127.0.0.1:${port}`, mode: 'connect', snat: '127.0.0.2' }],
      rules: [
        { name: 'bookinfo', from: { namespaces: ['bookinfo'] }, to: { cidrs: ['127.0.0.0/8'] }, action: 'allow' },
      ],
      timeouts: { drain: '30s' },
      admin: { listen: `127.0.0.1:${adminPort}` },
      audit: { sinks: [{ type: 'stdout', format: 'ecs' }] },
    };
    writeFileSync(join(mount, 'gateway.yaml'), stringify(config));
    chmodSync(mount, 0o755);
    for (const name of readdirSync(mount)) chmodSync(join(mount, name), 0o644);
    const id = (
      await dockerOk([
        ...['run', '-d', '--read-only', '--network', 'host', '--cap-drop', 'ALL', '--tmpfs', '/tmp'],
        ...['-v', `${mount}:/pki:ro`, '-v', `${join(mount, 'gateway.yaml')}:/etc/egress-gateway/gateway.yaml:ro`],
        image,
      ])
    ).trim();
    containers.push(id);
    await pollReadyz(adminPort, 200, id);
    return id;
  }
});

async function logs(id: string): Promise<string> {
  const result = await docker(['logs', id]);
  return `${result.stdout}${result.stderr}`;
}

/** Polls the container's /readyz until it answers `status` (deadline 30 s). */
async function pollReadyz(adminPort: number, status: number, id?: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  let last = 'no answer';
  while (Date.now() < deadline) {
    const answer = await fetch(`http://127.0.0.1:${adminPort}/readyz`).catch((error: Error) => error);
    if (!(answer instanceof Error) && answer.status === status) return;
    last = answer instanceof Error ? answer.message : String(answer.status);
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`/readyz never answered ${status} (last: ${last})${id ? `\n${await logs(id)}` : ''}`);
}
