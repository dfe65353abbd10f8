import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse, stringify } from 'yaml';
import { configSchema } from '../../src/config/config-schema.ts';
import { type Gateway, startGateway } from '../../src/main.ts';
import { type DaemonProcess, startDaemon } from '../helpers/daemon-process.ts';
import { freePort, waitForPort } from '../helpers/loopback-ports.ts';
import { waitUntil } from '../helpers/poll-until.ts';
import { runCommand } from '../helpers/run-command.ts';
import { type IstioClientSidecar, startIstioClientSidecar } from './helpers/istio-client-sidecar.ts';
import type { JsonDoc } from './helpers/validate-manifests.ts';

/*
 * The docker-compose demo without Docker (no engine runs on the build machines):
 * 1. `docker-compose config` validates docker-compose.yml;
 * 2. the demo's own files run for real on loopback: deploy/compose/mint-pki.sh mints the PKI,
 *    the gateway runs deploy/compose/gateway.yaml, tinyproxy tinyproxy.conf, nginx nginx.conf,
 *    rsyslogd rsyslog.conf, and a sidecar takes its TLS settings from the Envoy config.
 * Only container addresses, ports and /pki are rewritten, each rewrite asserted to apply, so a
 * changed demo file breaks this test instead of silently testing something else.
 */
const ROOT = new URL('../../', import.meta.url).pathname;
const COMPOSE = join(ROOT, 'deploy/compose');
const text = (path: string) => readFileSync(join(ROOT, path), 'utf8');

/** Container address → loopback stand-in. */
const GATEWAY_DMZ = '172.30.1.10';
const TINYPROXY_INTERNET = '172.30.2.20';
const SNAT = '127.0.0.2';
const TINYPROXY_BIND = '127.0.0.3';

function rewrite(source: string, label: string, replacements: Array<[string, string]>): string {
  let out = source;
  for (const [from, to] of replacements) {
    assert.ok(out.includes(from), `${label}: expected to find ${JSON.stringify(from)} (the demo file changed?)`);
    out = out.split(from).join(to);
  }
  return out;
}

interface EnvoySidecarSettings {
  sni: string;
  alpn: string[];
  exactSans: string[];
  minVersion: string;
  maxVersion: string;
  endpoint: { address: string; port: number };
  certificateChain: string;
  privateKey: string;
  trustedCa: string;
}

/** Reads the TLS settings out of an Envoy bootstrap the way Envoy would apply them to the cluster. */
function envoySidecarSettings(path: string): EnvoySidecarSettings {
  const bootstrap = parse(text(path));
  const [cluster] = bootstrap.static_resources.clusters;
  const tls = cluster.transport_socket.typed_config;
  assert.equal(tls['@type'], 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext');
  const common = tls.common_tls_context;
  const secrets = Object.fromEntries(bootstrap.static_resources.secrets.map((s: { name: string }) => [s.name, s]));
  const certName = common.tls_certificate_sds_secret_configs[0].name;
  const caName = common.combined_validation_context.validation_context_sds_secret_config.name;
  const endpoint = cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address;
  return {
    sni: tls.sni,
    alpn: common.alpn_protocols,
    exactSans: common.combined_validation_context.default_validation_context.match_typed_subject_alt_names.map(
      (m: { san_type: string; matcher: { exact: string } }) => {
        assert.equal(m.san_type, 'URI');
        return m.matcher.exact;
      },
    ),
    minVersion: common.tls_params.tls_minimum_protocol_version,
    maxVersion: common.tls_params.tls_maximum_protocol_version,
    endpoint: { address: endpoint.address, port: endpoint.port_value },
    certificateChain: secrets[certName].tls_certificate.certificate_chain.filename,
    privateKey: secrets[certName].tls_certificate.private_key.filename,
    trustedCa: secrets[caName].validation_context.trusted_ca.filename,
  };
}

describe('docker-compose demo', () => {
  let dir: string;
  let pki: string;
  let compose: JsonDoc;
  const daemons: DaemonProcess[] = [];
  const sidecars: IstioClientSidecar[] = [];
  let gateway: Gateway | undefined;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'egw-compose-'));
    pki = join(dir, 'pki');
    const result = await runCommand(
      'docker-compose',
      ['-f', join(ROOT, 'docker-compose.yml'), '--project-directory', ROOT, 'config'],
      { timeoutMs: 30_000 },
    );
    assert.equal(result.code, 0, `docker-compose config:\n${result.stderr}`);
    compose = parse(result.stdout);
  });
  /** Tracks a daemon for cleanup and waits until it listens; its output explains a failure. */
  const started = async (daemon: DaemonProcess, port: number): Promise<DaemonProcess> => {
    daemons.push(daemon);
    try {
      await waitForPort(port);
    } catch (error) {
      throw new Error(`${(error as Error).message}\n${daemon.output()}`);
    }
    return daemon;
  };

  after(async () => {
    for (const sidecar of sidecars) await sidecar.close();
    await gateway?.close(500);
    for (const daemon of daemons) await daemon.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('docker-compose config accepts the file, and it holds every part of the seed topology', () => {
    const services = compose.services;
    for (const name of [
      'pki',
      'syslog',
      'gateway',
      'tinyproxy',
      'web',
      'sidecar',
      'app',
      'sidecar-denied',
      'app-denied',
    ])
      assert.ok(services[name], name);
    assert.match(services.sidecar.image, /^envoyproxy\/envoy:/);
    assert.equal(
      services.app.network_mode,
      'service:sidecar',
      'the app shares the sidecar network namespace, like containers of one pod',
    );
    assert.equal(services['app-denied'].network_mode, 'service:sidecar-denied');
    assert.equal(services.gateway.read_only, true);
    assert.equal(services.gateway.user, '1000:1000');
    assert.deepEqual(services.gateway.command, ['serve', '--config', '/etc/egress-gateway/gateway.yaml']);
    assert.equal(services.gateway.depends_on.pki.condition, 'service_completed_successfully');
    assert.equal(services.gateway.networks.dmz.ipv4_address, GATEWAY_DMZ);
    assert.equal(services.tinyproxy.networks.internet.ipv4_address, TINYPROXY_INTERNET);
    assert.ok(services.web.networks.internet.aliases.includes('web.external.example'));
    assert.match(services.gateway.healthcheck.test.join(' '), /127\.0\.0\.1:9901\/readyz/);
  });

  it("mint-pki.sh mints the demo PKI in Istio's cacerts layout with the identities the configs name", async () => {
    const result = await runCommand('sh', [join(COMPOSE, 'mint-pki.sh')], {
      env: { ...process.env, PKI_DIR: writeDir(pki), EGW_CLI: join(ROOT, 'bin/egress-gateway.js') },
      timeoutMs: 60_000,
    });
    assert.equal(result.code, 0, result.stderr);
    for (const file of [
      'ca/root-cert.pem',
      'ca/ca-cert.pem',
      'ca/ca-key.pem',
      'ca/cert-chain.pem',
      'gateway/key.pem',
      'web/cert.pem',
    ])
      assert.ok(existsSync(join(pki, file)), file);
    const gatewayCert = new X509Certificate(readFileSync(join(pki, 'gateway/cert.pem')));
    assert.equal(gatewayCert.subjectAltName, 'URI:spiffe://cluster.local/ns/bookinfo/sa/bigip-proxy');
    assert.equal(
      (readFileSync(join(pki, 'productpage/cert.pem'), 'utf8').match(/BEGIN CERTIFICATE/g) ?? []).length,
      3,
      'sidecars present leaf + intermediate + root',
    );
  });

  it('the Envoy sidecars are set up like ISTIO_MUTUAL: Istio SNI and ALPN, TLS 1.2-1.3, exact URI SAN of the gateway SVID', () => {
    const gatewayConfig = parse(text('deploy/compose/gateway.yaml'));
    const gatewayCert = new X509Certificate(readFileSync(join(pki, 'gateway/cert.pem')));
    for (const [file, workload] of [
      ['deploy/compose/envoy/productpage.yaml', 'productpage'],
      ['deploy/compose/envoy/sm-apigw-a.yaml', 'sm-apigw-a'],
    ] as const) {
      const envoy = envoySidecarSettings(file);
      assert.equal(envoy.sni, 'outbound_.3128_._.bigip-proxy-svc.bookinfo.svc.cluster.local', file);
      assert.deepEqual(envoy.alpn, ['istio-peer-exchange', 'istio']);
      assert.deepEqual([envoy.minVersion, envoy.maxVersion], ['TLSv1_2', 'TLSv1_3']);
      assert.deepEqual(
        envoy.exactSans.map((san) => `URI:${san}`),
        [gatewayCert.subjectAltName],
        'the SAN the sidecar demands is the one the gateway presents',
      );
      assert.deepEqual(envoy.endpoint, {
        address: 'gateway',
        port: Number(gatewayConfig.listeners[0].listen.split(':')[1]),
      });
      assert.equal(envoy.certificateChain, `/pki/${workload}/cert.pem`);
      for (const path of [envoy.certificateChain, envoy.privateKey, envoy.trustedCa])
        assert.ok(existsSync(path.replace('/pki', pki)), `${file}: ${path} is minted`);
    }
  });

  it('the addresses line up: SNAT is the gateway dmz address, tinyproxy admits only it and binds its internet address', () => {
    const gatewayConfig = configSchema.parse(parse(text('deploy/compose/gateway.yaml')));
    const [listener] = gatewayConfig.listeners;
    assert.equal(listener?.snat, GATEWAY_DMZ);
    assert.equal(listener?.upstream, 'tinyproxy:8888');
    const tinyproxy = text('deploy/compose/tinyproxy/tinyproxy.conf');
    assert.match(tinyproxy, /^Port 8888$/m);
    assert.deepEqual(
      [...tinyproxy.matchAll(/^Allow (\S+)$/gm)].map((m) => m[1]),
      [GATEWAY_DMZ],
    );
    assert.match(tinyproxy, new RegExp(`^Bind ${TINYPROXY_INTERNET.replaceAll('.', '\\.')}$`, 'm'));
    assert.ok(gatewayConfig.audit.sinks.some((s) => s.type === 'syslog' && s.address === 'syslog:5514'));
    assert.ok(gatewayConfig.audit.sinks.some((s) => s.type === 'stdout'));
  });

  it('rsyslogd accepts the receiver config (rsyslogd -N1)', async () => {
    const conf = join(dir, 'rsyslog-check.conf');
    const logDir = writeDir(join(dir, 'syslog-check'));
    writeFileSync(
      conf,
      rewrite(text('deploy/compose/syslog/rsyslog.conf'), 'rsyslog.conf', [['/var/log/remote', logDir]]),
    );
    const result = await runCommand('rsyslogd', ['-N1', '-f', conf]);
    assert.equal(result.code, 0, result.stderr);
  });

  it('the demo files run on loopback: bookinfo gets through to nginx, sm-apigw-a is reset, audit reaches the syslog receiver', async () => {
    // syslog receiver
    const syslogPort = await freePort();
    const logDir = writeDir(join(dir, 'syslog'));
    const rsyslogConf = join(dir, 'rsyslog.conf');
    writeFileSync(
      rsyslogConf,
      rewrite(text('deploy/compose/syslog/rsyslog.conf'), 'rsyslog.conf', [
        ['/var/log/remote', logDir],
        ['port="5514"', `port="${syslogPort}"`],
      ]),
    );
    await started(startDaemon('rsyslogd', ['-n', '-f', rsyslogConf, '-i', join(logDir, 'rsyslogd.pid')]), syslogPort);
    // web (nginx)
    const webPort = await freePort();
    const nginxConf = join(dir, 'nginx.conf');
    writeFileSync(
      nginxConf,
      rewrite(text('deploy/compose/web/nginx.conf'), 'nginx.conf', [
        ['listen 8443 ssl', `listen 127.0.0.1:${webPort} ssl`],
        ['/pki/', `${pki}/`],
        ['/tmp/nginx.pid', join(dir, 'nginx.pid')],
        // Node hands children a socketpair as stdout, which nginx cannot open() as /dev/stdout.
        ['access_log /dev/stdout', `access_log ${join(dir, 'access.log')}`],
      ]),
    );
    const nginx = await started(
      startDaemon('nginx', ['-c', nginxConf, '-p', dir, '-e', 'stderr', '-g', 'daemon off;']),
      webPort,
    );
    // tinyproxy
    const tinyproxyPort = await freePort();
    const tinyproxyConf = join(dir, 'tinyproxy.conf');
    writeFileSync(
      tinyproxyConf,
      rewrite(text('deploy/compose/tinyproxy/tinyproxy.conf'), 'tinyproxy.conf', [
        ['Port 8888', `Port ${tinyproxyPort}\nListen 127.0.0.1`],
        [`Allow ${GATEWAY_DMZ}`, `Allow ${SNAT}`],
        [`Bind ${TINYPROXY_INTERNET}`, `Bind ${TINYPROXY_BIND}`],
        ['ConnectPort 8443', `ConnectPort ${webPort}`],
      ]),
    );
    const tinyproxy = await started(startDaemon('tinyproxy', ['-d', '-c', tinyproxyConf]), tinyproxyPort);
    // gateway, from the compose config
    const config = parse(
      rewrite(text('deploy/compose/gateway.yaml'), 'gateway.yaml', [
        ['/pki/', `${pki}/`],
        ['0.0.0.0:3128', '127.0.0.1:0'],
        [GATEWAY_DMZ, SNAT],
        ['tinyproxy:8888', `127.0.0.1:${tinyproxyPort}`],
        ['syslog:5514', `127.0.0.1:${syslogPort}`],
      ]),
    );
    config.audit.sinks = config.audit.sinks.filter((s: { type: string }) => s.type !== 'stdout'); // keep the test runner's stdout clean
    const configPath = join(dir, 'gateway.yaml');
    writeFileSync(configPath, stringify(config));
    gateway = await startGateway({ configPath, log: () => {}, adminListen: '127.0.0.1:0', processMetrics: false });
    const admin = gateway.adminAddress;
    assert.ok(admin);
    const ready = await fetch(`http://${admin.host}:${admin.port}/readyz`);
    assert.equal(ready.status, 200, 'the compose healthcheck probe (GET /readyz) passes');
    const gatewayPort = gateway.addresses.get('bigip-proxy')?.port;
    assert.ok(gatewayPort);
    // sidecars with the Envoy configs' TLS settings
    const sidecarFor = async (file: string) => {
      const envoy = envoySidecarSettings(file);
      const sidecar = await startIstioClientSidecar({
        upstream: { host: '127.0.0.1', port: gatewayPort },
        certPath: envoy.certificateChain.replace('/pki', pki),
        keyPath: envoy.privateKey.replace('/pki', pki),
        caPath: envoy.trustedCa.replace('/pki', pki),
        sni: envoy.sni,
        alpn: envoy.alpn,
        expectedSan: envoy.exactSans[0] as string,
      });
      sidecars.push(sidecar);
      return sidecar;
    };
    const productpage = await sidecarFor('deploy/compose/envoy/productpage.yaml');
    const denied = await sidecarFor('deploy/compose/envoy/sm-apigw-a.yaml');
    // The app's command from docker-compose.yml, with --connect-to standing in for Docker DNS.
    const curl = (port: number, path: string) =>
      runCommand('curl', [
        '-sS',
        '--max-time',
        '10',
        '-x',
        `http://127.0.0.1:${port}`,
        '--cacert',
        join(pki, 'ca/root-cert.pem'),
        '--connect-to',
        `web.external.example:${webPort}:127.0.0.1:${webPort}`,
        `https://web.external.example:${webPort}${path}`,
      ]);

    const ok = await curl(productpage.port, '/from-productpage');
    assert.equal(ok.code, 0, `${ok.stderr}\n${tinyproxy.output()}\n${nginx.output()}`);
    const body = JSON.parse(ok.stdout);
    assert.equal(body.peerAddress, TINYPROXY_BIND, 'nginx sees the address tinyproxy binds');
    assert.equal(body.uri, '/from-productpage');
    assert.match(
      tinyproxy.output(),
      new RegExp(`Connect \\(file descriptor \\d+\\): ${SNAT.replaceAll('.', '\\.')}`),
      'tinyproxy logs the gateway SNAT address as its client',
    );
    assert.deepEqual(
      productpage.connections.map((c) => c.alpnProtocol),
      [false],
    );

    const reset = await curl(denied.port, '/from-sm-apigw-a');
    assert.equal(reset.code, 56, reset.stderr);
    assert.match(reset.stderr, /Connection reset by peer/);

    // tinyproxy admits only the SNAT address: a direct request from 127.0.0.1 is refused.
    const direct = await runCommand('curl', [
      '-sS',
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      '--max-time',
      '5',
      '-x',
      `http://127.0.0.1:${tinyproxyPort}`,
      'http://127.0.0.1:9/',
    ]);
    assert.equal(direct.stdout, '403');

    // The syslog receiver files the gateway's ECS records under its app name.
    const auditLog = join(logDir, 'egress-gateway.log');
    await waitUntil(
      () => existsSync(auditLog) && /egress-rejected/.test(readFileSync(auditLog, 'utf8')),
      10_000,
      `audit records in ${auditLog}`,
      100,
    );
    const lines = readFileSync(auditLog, 'utf8').split('\n').filter(Boolean);
    const permitted = lines.find((l) => l.includes('"egress-permitted"'));
    assert.ok(permitted, lines.join('\n'));
    assert.match(permitted, /spiffe:\/\/cluster\.local\/ns\/bookinfo\/sa\/productpage/);
    assert.match(permitted, new RegExp(`"nat":\\{"ip":"${SNAT.replaceAll('.', '\\.')}"`));
    assert.ok(lines.some((l) => l.includes('"egress-rejected"') && l.includes('sm-apigw-a')));
  });
});

function writeDir(path: string): string {
  mkdirSync(path, { recursive: true });
  return path;
}
