import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { parse } from 'yaml';
import { runCommand } from '../helpers/run-command.ts';
import { docker, dockerSkipReason } from './helpers/docker-engine.ts';
import type { JsonDoc } from './helpers/validate-manifests.ts';

/*
 * The offline docker-compose demo, up for real: every image built here from the air-gapped base
 * (scripts/build-base-image.sh) and Debian packages, stunnel4 as the client sidecars. Asserts the
 * seed topology end to end, then `down -v`. Needs a Docker engine (EGW_REQUIRE_DOCKER=1 in CI).
 */
const ROOT = new URL('../../', import.meta.url).pathname;
const PROJECT = 'egwdemo';
const FILES = ['-f', `${ROOT}docker-compose.yml`, '-f', `${ROOT}deploy/compose/offline.yml`];
const GATEWAY_SNAT = '172.30.1.10';
const TINYPROXY_INTERNET = '172.30.2.20';

const compose = (args: readonly string[], timeoutMs = 60_000) =>
  runCommand('docker-compose', ['-p', PROJECT, '--project-directory', ROOT, ...FILES, ...args], {
    timeoutMs,
    env: { ...process.env, DOCKER_BUILDKIT: '0', COMPOSE_DOCKER_CLI_BUILD: '0' },
  });

async function composeOk(args: readonly string[], timeoutMs?: number): Promise<string> {
  const result = await compose(args, timeoutMs);
  assert.equal(result.code, 0, `docker-compose ${args.join(' ')}:\n${result.stderr}`);
  return result.stdout;
}

/** Polls `read` until `done` accepts its result (deadline `timeoutMs`); returns the last result. */
async function pollFor(read: () => Promise<string>, done: (text: string) => boolean, timeoutMs = 120_000) {
  const deadline = Date.now() + timeoutMs;
  let text = await read();
  while (!done(text)) {
    if (Date.now() > deadline) return text;
    await new Promise((r) => setTimeout(r, 1000));
    text = await read();
  }
  return text;
}

describe('offline docker-compose demo: configuration', () => {
  it('the overlay replaces every Docker Hub image with a local build from the air-gapped base', async () => {
    const config = parse(await composeOk(['config'])) as JsonDoc;
    for (const [name, service] of Object.entries<JsonDoc>(config.services)) {
      assert.ok(service.build, `${name} is built locally`);
      assert.equal(service.build.args.BASE, 'mesh-egress-gateway-base:24', name);
      assert.equal(service.build.network, 'host', `${name}: apt/npm reach the mirrors as the host does`);
      assert.doesNotMatch(service.image, /envoy|curlimages|^nginx:/, name);
    }
    assert.deepEqual(config.services.sidecar.entrypoint, ['stunnel4']);
    for (const network of ['mesh', 'dmz', 'internet']) assert.equal(config.networks[network].internal, true);
    assert.equal(config.networks.dmz.ipam.config[0].subnet, '172.30.1.0/24', 'subnets survive the override');
  });
});

const skip = await dockerSkipReason();

describe('offline docker-compose demo: up', { skip }, () => {
  before(
    async () => {
      await compose(['down', '-v', '--remove-orphans'], 120_000); // leftovers of an interrupted run
      await composeOk(['up', '-d', '--build'], 900_000);
    },
    { timeout: 960_000 },
  );
  after(async () => {
    if (!process.env.EGW_KEEP_DEMO) await compose(['down', '-v', '--remove-orphans'], 120_000);
  });

  const logs = async (service: string) => {
    const result = await compose(['logs', '--no-color', service]);
    return result.stdout + result.stderr;
  };
  const syslogFiles = async () =>
    (await compose(['exec', '-T', 'syslog', 'sh', '-c', 'cat /var/log/remote/*.log'])).stdout;

  it('the allowed app gets the web answer through sidecar → gateway → tinyproxy; the denied app is cut off', async () => {
    const answer = new RegExp(`\\{"peerAddress":"${TINYPROXY_INTERNET}","host":"web.external.example"`);
    const app = await pollFor(
      () => logs('app'),
      (text) => answer.test(text),
    );
    assert.match(app, answer, 'nginx answers the bookinfo app and sees the address tinyproxy binds');
    assert.match(app, /"uri":"\/from-productpage"/);
    const denied = await pollFor(
      () => logs('app-denied'),
      (text) => /curl exit \d+/.test(text),
    );
    assert.match(denied, /curl: \(56\)/, 'the connection is cut before any answer');
    assert.match(denied, /curl exit 56/);
    assert.doesNotMatch(denied, /peerAddress/, 'sm-apigw-a never reaches the web server');
  });

  it("tinyproxy's log names the gateway's SNAT address; the syslog receiver holds audit records of both apps", async () => {
    const connect = new RegExp(`Connect \\(file descriptor \\d+\\): ${GATEWAY_SNAT.replaceAll('.', '\\.')}`);
    const done = (text: string) => connect.test(text) && /egress-permitted/.test(text) && /egress-rejected/.test(text);
    const files = await pollFor(syslogFiles, done);
    assert.match(files, connect, 'tinyproxy (via the Docker syslog driver) logs the SNAT address as its client');
    const lines = files.split('\n').filter((l) => l.includes('egress-gateway: {'));
    const permitted = lines.find((l) => l.includes('"egress-permitted"'));
    assert.ok(permitted, files.slice(-2000));
    assert.match(permitted, /spiffe:\/\/cluster\.local\/ns\/bookinfo\/sa\/productpage/);
    assert.match(permitted, new RegExp(`"nat":\\{"ip":"${GATEWAY_SNAT.replaceAll('.', '\\.')}"`));
    const rejected = lines.find((l) => l.includes('"egress-rejected"'));
    assert.ok(rejected);
    assert.match(rejected, /spiffe:\/\/cluster\.local\/ns\/sm-apigw-a\/sa\/default/);
    assert.match(rejected, /"code":"EGW_POLICY_DENIED"/);
  });

  it('the gateway container runs read-only as uid 1000 from the compiled image on the demo networks only', async () => {
    const id = (await composeOk(['ps', '-q', 'gateway'])).trim();
    const inspect = JSON.parse((await docker(['inspect', id])).stdout)[0];
    assert.equal(inspect.Config.User, '1000:1000');
    assert.equal(inspect.HostConfig.ReadonlyRootfs, true);
    assert.equal(inspect.State.Health.Status, 'healthy', 'the /readyz healthcheck passes');
    assert.deepEqual(Object.keys(inspect.NetworkSettings.Networks).sort(), [
      `${PROJECT}_dmz`,
      `${PROJECT}_mesh`,
      `${PROJECT}_ops`,
    ]);
  });
});
