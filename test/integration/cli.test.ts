import assert from 'node:assert/strict';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { runCli, runCommand } from '../helpers/run-command.ts';
import { createTestPki, type TestPki } from '../helpers/test-pki.ts';

describe('egress-gateway CLI', () => {
  let pki: TestPki;
  let dir: string;
  let configPath: string;

  before(async () => {
    pki = await createTestPki();
    dir = mkdtempSync(join(tmpdir(), 'egw-cli-'));
    configPath = join(dir, 'gateway.yaml');
    writeFileSync(
      configPath,
      stringify({
        identity: {
          trustDomain: 'cluster.local',
          trustAnchors: pki.intermediatePath,
          cert: pki.gateway.certPath,
          key: pki.gateway.keyPath,
        },
        listeners: [
          { name: 'egress', listen: '127.0.0.1:0', mode: 'connect', snat: '127.0.0.2' },
          { name: 'legacy-proxy', listen: '127.0.0.1:0', mode: 'tcp', upstream: '127.0.0.1:8888' },
        ],
        resolver: { hosts: { 'api.example.com': '203.0.113.10' } },
        rules: [
          {
            name: 'bookinfo-egress',
            listeners: ['egress'],
            from: { namespaces: ['bookinfo'] },
            to: { hosts: ['*.example.com'], ports: [443] },
            action: 'allow',
            snat: '127.0.0.3',
          },
          { name: 'bookinfo-legacy', listeners: ['legacy-proxy'], from: { namespaces: ['bookinfo'] }, action: 'allow' },
        ],
      }),
    );
  });
  after(() => {
    pki.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  it('config validate accepts a good file', async () => {
    const result = await runCli(['config', 'validate', '--config', configPath]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /valid \(2 listeners, 2 rules, 1 trust anchors for cluster\.local\)/);
  });

  it('config validate names the file and key of a problem and exits non-zero', async () => {
    const broken = join(dir, 'broken.yaml');
    writeFileSync(broken, readFileSync(configPath, 'utf8').replace('mode: tcp', 'mode: udp'));
    const result = await runCli(['config', 'validate', '--config', broken]);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /EGW_CONFIG_INVALID/);
    assert.match(result.stderr, /broken\.yaml: listeners\[1\]\.mode/);
    assert.doesNotMatch(result.stderr, /\n\s+at /, 'no stack trace for a config error');
  });

  it('config validate refuses a SNAT address that is not bindable on this host', async () => {
    const unbindable = join(dir, 'unbindable.yaml');
    writeFileSync(unbindable, readFileSync(configPath, 'utf8').replace('snat: 127.0.0.2', 'snat: 203.0.113.77'));
    const result = await runCli(['config', 'validate', '--config', unbindable]);
    assert.equal(result.code, 2);
    assert.match(
      result.stderr,
      /EGW_SNAT_UNBINDABLE.*listeners\[0\]\.snat: SNAT address 203\.0\.113\.77 is not bindable/,
    );
  });

  it('config validate names the key of a missing certificate file', async () => {
    const missing = join(dir, 'missing.yaml');
    writeFileSync(missing, readFileSync(configPath, 'utf8').replace(pki.gateway.keyPath, '/nonexistent/key.pem'));
    const result = await runCli(['config', 'validate', '--config', missing]);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /identity\.key: cannot read \/nonexistent\/key\.pem \(ENOENT\)/);
  });

  it('policy check prints ALLOW with the rule and SNAT, exit 0', async () => {
    const result = await runCli([
      'policy',
      'check',
      '--config',
      configPath,
      '--spiffe-id',
      'spiffe://cluster.local/ns/bookinfo/sa/productpage',
      '--listener',
      'egress',
      '--dest',
      'api.example.com:443',
    ]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^ALLOW listener=egress rule=bookinfo-egress ip=203\.0\.113\.10 snat=127\.0\.0\.3/);
  });

  it('policy check prints DENY and the default deny, exit 1', async () => {
    const result = await runCli([
      'policy',
      'check',
      '--config',
      configPath,
      '--spiffe-id',
      'spiffe://cluster.local/ns/sm-apigw-a/sa/default',
      '--dest',
      'api.example.com:443',
    ]);
    assert.equal(result.code, 1);
    assert.match(
      result.stdout,
      /^DENY listener=egress rule=\(default deny\) status=403 code=EGW_POLICY_DENIED: no rule matched/,
    );
  });

  it('policy check evaluates a tcp listener without a destination', async () => {
    const result = await runCli([
      'policy',
      'check',
      '--config',
      configPath,
      '--spiffe-id',
      'spiffe://cluster.local/ns/bookinfo/sa/productpage',
      '--listener',
      'legacy-proxy',
    ]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /ALLOW listener=legacy-proxy rule=bookinfo-legacy/);
  });

  it('policy check rejects a malformed SPIFFE ID with a code', async () => {
    const result = await runCli([
      'policy',
      'check',
      '--config',
      configPath,
      '--spiffe-id',
      'spiffe://cluster.local/ns/../x',
      '--dest',
      'a.example.com:443',
    ]);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /EGW_IDENTITY_SPIFFE_ID_INVALID/);
  });

  it('pki init writes the Istio cacerts layout and pki issue writes an SVID with a URI SAN', async () => {
    const ca = join(dir, 'ca');
    const init = await runCli(['pki', 'init', '--dir', ca, '--trust-domain', 'cluster.local']);
    assert.equal(init.code, 0, init.stderr);
    for (const file of ['root-cert.pem', 'ca-cert.pem', 'ca-key.pem', 'cert-chain.pem'])
      assert.ok(existsSync(join(ca, file)), file);
    const again = await runCli(['pki', 'init', '--dir', ca]);
    assert.equal(again.code, 2, 'an existing CA is never overwritten without --force');
    const out = join(dir, 'svid');
    const issue = await runCli([
      'pki',
      'issue',
      '--ca-dir',
      ca,
      '--spiffe-id',
      'spiffe://cluster.local/ns/bookinfo/sa/productpage',
      '--out',
      out,
      '--dns',
      'productpage.bookinfo',
      '--ttl',
      '2h',
    ]);
    assert.equal(issue.code, 0, issue.stderr);
    const inspect = await runCli(['pki', 'inspect', join(out, 'cert.pem'), '--anchors', join(ca, 'ca-cert.pem')]);
    assert.equal(inspect.code, 0, inspect.stdout);
    assert.match(inspect.stdout, /URI SANs: {4}spiffe:\/\/cluster\.local\/ns\/bookinfo\/sa\/productpage/);
    assert.match(inspect.stdout, /DNS SANs: {4}productpage\.bookinfo/);
    assert.match(
      inspect.stdout,
      /identity: {4}spiffe:\/\/cluster\.local\/ns\/bookinfo\/sa\/productpage \(namespace bookinfo, service account productpage\)/,
    );
    assert.match(inspect.stdout, /chain check: OK/);
    assert.match(inspect.stdout, /SVID rules: {2}OK/);
  });

  it('pki issue can mint RSA-2048 keys', async () => {
    const ca = join(dir, 'ca-rsa');
    assert.equal((await runCli(['pki', 'init', '--dir', ca, '--key-type', 'rsa'])).code, 0);
    const out = join(dir, 'svid-rsa');
    const issue = await runCli([
      'pki',
      'issue',
      '--ca-dir',
      ca,
      '--spiffe-id',
      'spiffe://cluster.local/ns/a/sa/b',
      '--out',
      out,
      '--key-type',
      'rsa',
    ]);
    assert.equal(issue.code, 0, issue.stderr);
    assert.match(readFileSync(join(out, 'key.pem'), 'utf8'), /BEGIN PRIVATE KEY/);
  });

  it('pki inspect lists SVID rule violations and exits 1', async () => {
    const twoUris = await pki.issue('inspect-two', {
      spiffeIds: ['spiffe://cluster.local/ns/a/sa/b', 'spiffe://cluster.local/ns/a/sa/c'],
    });
    const result = await runCli(['pki', 'inspect', twoUris.certPath]);
    assert.equal(result.code, 1);
    assert.match(result.stdout, /EGW_IDENTITY_URI_SAN_COUNT: leaf has 2 URI SANs/);
  });

  it('pki issue rejects a SPIFFE ID without a path', async () => {
    const result = await runCli([
      'pki',
      'issue',
      '--ca-dir',
      join(dir, 'ca'),
      '--spiffe-id',
      'spiffe://cluster.local',
      '--out',
      join(dir, 'x'),
    ]);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /EGW_PKI_ARGUMENT.*non-root path/);
  });
});

describe('bin/egress-gateway.js', () => {
  const repo = new URL('../..', import.meta.url).pathname;
  let dir: string;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'egw-bin-'));
    mkdirSync(join(dir, 'bin'));
    copyFileSync(join(repo, 'bin/egress-gateway.js'), join(dir, 'bin/egress-gateway.js'));
    copyFileSync(join(repo, 'package.json'), join(dir, 'package.json'));
    mkdirSync(join(dir, 'dist/cli'), { recursive: true });
    writeFileSync(join(dir, 'dist/cli/index.js'), "console.log('compiled');\n");
    mkdirSync(join(dir, 'src/cli'), { recursive: true });
    writeFileSync(join(dir, 'src/cli/index.ts'), "const from: string = 'source';\nconsole.log(from);\n");
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const run = () => runCommand(process.execPath, [join(dir, 'bin/egress-gateway.js')]);
  const age = (path: string, seconds: number) => {
    const when = new Date(Date.now() - seconds * 1000);
    utimesSync(join(dir, path), when, when);
  };

  it('--version prints the version from package.json', async () => {
    const result = await runCli(['--version']);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout.trim(), JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')).version);
  });

  it('runs dist/ when it is newer than src/, and src/ through tsx when dist/ is stale', async () => {
    age('src/cli/index.ts', 60);
    assert.equal((await run()).stdout, 'compiled\n');
    age('dist/cli/index.js', 120);
    const noTsx = await run();
    assert.equal(noTsx.stdout, 'compiled\n', 'without tsx (a production install) the older build still runs');
    symlinkSync(join(repo, 'node_modules'), join(dir, 'node_modules'));
    assert.equal((await run()).stdout, 'source\n', 'in a checkout the current sources win over a stale build');
    rmSync(join(dir, 'node_modules'));
    rmSync(join(dir, 'dist'), { recursive: true });
    const missing = await run();
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /dist\/ is missing; run `npm run build`/);
  });
});
