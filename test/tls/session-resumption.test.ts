import assert from 'node:assert/strict';
import { copyFileSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { type ClusterGateway, startClusterGateway } from '../helpers/cluster-gateway.ts';
import { type GatewayFixture, startFixtureTargets, startGatewayFixture } from '../helpers/gateway-fixture.ts';
import { freePort } from '../helpers/loopback-ports.ts';
import { pollUntil } from '../helpers/poll-until.ts';
import { runCommand } from '../helpers/run-command.ts';
import { type TestGateway, writeTestConfig } from '../helpers/test-gateway.ts';
import { createTestPki, type TestPki, type WrittenLeaf } from '../helpers/test-pki.ts';
import { connectOnce } from './resumption-client.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** s_client printed its session summary ("New, …" or "Reused, …"), which is what the test reads. */
const summarised = (stdout: string) => /^(New|Reused), TLSv1\.[23]/m.test(stdout);
/**
 * The complete session (with its ticket) s_client has written to `path`, or undefined. s_client
 * rewrites the file for each TLS 1.3 ticket, so the file may be cut short when s_client is ended:
 * callers keep the text read here.
 */
const ticketIn = (path: string): string | undefined => {
  const text = existsSync(path) ? readFileSync(path, 'utf8') : '';
  return /-----BEGIN SSL SESSION PARAMETERS-----[\s\S]*-----END SSL SESSION PARAMETERS-----/.exec(text)?.[0];
};

describe('TLS session resumption with client-certificate identity', () => {
  let pki: TestPki;
  let gw: TestGateway;
  let client: WrittenLeaf;
  let port: number;
  let fixture: GatewayFixture;

  before(async () => {
    fixture = await startGatewayFixture(
      ({ tcpEchoPort, echoPort }) => ({
        listeners: [
          { name: 'vs', listen: '127.0.0.1:0', mode: 'tcp', upstream: `127.0.0.1:${tcpEchoPort}` },
          { name: 'web', listen: '127.0.0.1:0', mode: 'tcp', upstream: `127.0.0.1:${echoPort}` },
        ],
        rules: [{ name: 'bookinfo', from: { namespaces: ['bookinfo'] }, action: 'allow' }],
      }),
      { tcpEchoes: 1 },
    );
    ({ pki, gw } = fixture);
    client = await pki.workload('bookinfo', 'productpage');
    port = gw.port('vs');
  });
  after(async () => {
    await fixture?.close();
  });

  for (const maxVersion of ['TLSv1.3', 'TLSv1.2'] as const) {
    it(`a Node client resumes (${maxVersion}), reconnecting before any application data`, async () => {
      const first = await connectOnce(port, client, pki.rootPath, { maxVersion });
      assert.equal(first.reused, false, 'the first connection is a full handshake');
      assert.ok(first.session, 'the ticket arrives without any application data');
      for (let i = 0; i < 3; i++) {
        const again = await connectOnce(port, client, pki.rootPath, {
          maxVersion,
          session: first.session,
          untilHandshake: true,
        });
        assert.equal(again.reused, true, `reconnect ${i + 1} resumes`);
      }
    });
  }

  it('resumes for openssl s_client -sess_out/-sess_in (TLS 1.3 and 1.2) and s_time -reuse', async () => {
    for (const version of ['-tls1_3', '-tls1_2']) {
      const sess = join(pki.dir, `sess${version}.pem`);
      const base = ['s_client', '-connect', `127.0.0.1:${port}`, '-CAfile', pki.rootPath, version];
      const auth = ['-cert', client.certPath, '-key', client.keyPath, '-noservername'];
      // -ign_eof + a short read: s_client stays until the tickets (sent after the handshake) arrive;
      // it writes -sess_out when one does, and is ended then instead of at the timeout.
      let session: string | undefined;
      const out = await runCommand('openssl', [...base, ...auth, '-sess_out', sess, '-ign_eof'], {
        input: 'x',
        timeoutMs: 4000,
        until: ({ stdout }) => {
          // Kept once seen: a later check may catch the file mid-rewrite (the next ticket).
          session ??= summarised(stdout) ? ticketIn(sess) : undefined;
          return session !== undefined;
        },
      });
      assert.match(out.stdout, /^New, TLSv1\.[23]/m, out.stdout);
      // s_client may also end by itself (the gateway closed first): its file is then complete.
      session ??= ticketIn(sess);
      assert.ok(session, `s_client wrote a session with its ticket: ${out.stdout}`);
      writeFileSync(`${sess}.in`, `${session}\n`);
      const back = await runCommand('openssl', [...base, ...auth, '-sess_in', `${sess}.in`, '-ign_eof'], {
        input: 'y',
        timeoutMs: 4000,
        until: ({ stdout }) => summarised(stdout),
      });
      assert.match(back.stdout, /^Reused, TLSv1\.[23]/m, `${version}: ${back.stdout}`);
    }
    // TLS 1.2: the ticket is in the handshake. TLS 1.3: s_time only reads tickets when it reads
    // a page (-www), since it never reads otherwise; the page comes from an HTTP upstream.
    for (const [version, extra] of [
      ['-tls1_2', [`127.0.0.1:${port}`]],
      ['-tls1_3', [`127.0.0.1:${gw.port('web')}`, '-www', '/']],
    ] as const) {
      const reuse = await runCommand(
        'openssl',
        [
          's_time',
          '-connect',
          ...extra,
          version,
          '-cert',
          client.certPath,
          '-key',
          client.keyPath,
          '-reuse',
          '-time',
          '1',
        ],
        { timeoutMs: 20_000 },
      );
      // s_time prints one 'r' per resumed connection and '*' per full handshake.
      const marks = /^[r*]+$/m.exec(reuse.stdout)?.[0] ?? '';
      assert.ok(
        marks.replaceAll('*', '').length >= 3,
        `s_time ${version} -reuse resumed: ${reuse.stdout}${reuse.stderr}`,
      );
    }
  });

  it('resumes for curl (two URLs, one session cache, no keep-alive)', async () => {
    const url = `https://127.0.0.1:${port}/`;
    const curl = await runCommand(
      'curl',
      [
        '-sv',
        '--cacert',
        pki.rootPath,
        '--cert',
        client.certPath,
        '--key',
        client.keyPath,
        '-H',
        'Connection: close',
        '-m',
        '2',
        url,
        url,
      ],
      { timeoutMs: 15_000 },
    );
    const handshakes = curl.stderr.match(/SSL connection using/g) ?? [];
    assert.equal(handshakes.length, 2, curl.stderr);
    assert.match(curl.stderr, /SSL re-using session ID/, curl.stderr);
  });

  it('a resumed session whose leaf has expired is refused', async () => {
    const shortLived = await pki.workload('bookinfo', 'short', { notAfter: new Date(Date.now() + 2500) });
    const first = await connectOnce(port, shortLived, pki.rootPath);
    assert.equal(first.reused, false);
    assert.ok(first.session, 'a valid leaf gets a ticket');
    const before = await connectOnce(port, shortLived, pki.rootPath, { session: first.session });
    assert.equal(before.reused, true, 'positive control: it resumes while the leaf is valid');
    await sleep(Math.max(0, shortLived.leaf.cert.notAfter.getTime() - Date.now() + 1200));
    const after = await connectOnce(port, shortLived, pki.rootPath, { session: first.session });
    assert.equal(after.reused, true, 'OpenSSL itself resumes it: the expiry check is ours');
    assert.equal(after.closedEarly, true, 'and the gateway resets it');
    const refused = await gw.waitForRecord(
      (r) => r.action === 'identity-rejected' && r.code === 'EGW_IDENTITY_EXPIRED',
    );
    assert.match(String(refused.reason), /expired/);
  });
});

describe('TLS session resumption across an anchor rotation', () => {
  it('a session minted before the rotation does not resume into trust', async () => {
    const targets = await startFixtureTargets({ httpEchoes: [], tcpEchoes: 1 });
    const { pki } = targets;
    const other = await createTestPki();
    const anchors = join(pki.dir, 'rotating-anchors.pem');
    copyFileSync(pki.intermediatePath, anchors);
    const gw = await targets.startGateway(
      {
        listeners: [{ name: 'vs', listen: '127.0.0.1:0', mode: 'tcp', upstream: `127.0.0.1:${targets.tcpEchoPort}` }],
        rules: [{ name: 'bookinfo', from: { namespaces: ['bookinfo'] }, action: 'allow' }],
        admin: { listen: '127.0.0.1:0', watch: false },
      },
      { anchors },
    );
    try {
      const client = await pki.workload('bookinfo', 'productpage');
      const port = gw.port('vs');
      const first = await connectOnce(port, client, pki.rootPath);
      assert.ok(first.session);
      const again = await connectOnce(port, client, pki.rootPath, { session: first.session, untilHandshake: true });
      assert.equal(again.reused, true, 'positive control: it resumes before the rotation');

      // Rotation that keeps the client trusted: full handshake (new id context), still accepted.
      writeFileSync(anchors, `${readFileSync(pki.intermediatePath, 'utf8')}\n${other.intermediate.certPem}`);
      assert.equal((await gw.gateway.reload()).ok, true);
      const kept = await connectOnce(port, client, pki.rootPath, { session: first.session });
      assert.equal(kept.reused, false, 'a session from before the rotation gets a full handshake');
      assert.equal(kept.closedEarly, false, 'and the still-trusted client is served');

      // Rotation away from the client's CA: no resumption into trust, the full handshake is refused.
      const fresh = await connectOnce(port, client, pki.rootPath);
      assert.ok(fresh.session);
      writeFileSync(anchors, other.intermediate.certPem);
      assert.equal((await gw.gateway.reload()).ok, true);
      const gone = await connectOnce(port, client, pki.rootPath, { session: fresh.session });
      assert.equal(gone.reused, false, 'not resumed');
      assert.equal(gone.closedEarly, true, 'refused');
      await gw.waitForRecord(
        (r) => r.action === 'identity-rejected' && /UNTRUSTED|TLS_HANDSHAKE/.test(String(r.code)),
        5000,
      );
    } finally {
      await targets.close();
      other.cleanup();
    }
  });
});

describe('TLS session resumption with a root-only anchor', () => {
  it('re-verifies the resumed leaf through the intermediate remembered from the full handshake', async () => {
    const fixture = await startGatewayFixture(
      ({ tcpEchoPort }) => ({
        listeners: [{ name: 'vs', listen: '127.0.0.1:0', mode: 'tcp', upstream: `127.0.0.1:${tcpEchoPort}` }],
        rules: [{ name: 'bookinfo', from: { namespaces: ['bookinfo'] }, action: 'allow' }],
      }),
      { httpEchoes: [], tcpEchoes: 1, anchors: (pki) => pki.rootPath },
    );
    const { pki, gw } = fixture;
    try {
      const client = await pki.workload('bookinfo', 'productpage');
      const port = gw.port('vs');
      const first = await connectOnce(port, client, pki.rootPath);
      assert.ok(first.session);
      // OpenSSL keeps only the leaf in the session: without the remembered intermediate the
      // path to the root could not be built and the resumed connection would be reset.
      const again = await connectOnce(port, client, pki.rootPath, { session: first.session });
      assert.equal(again.reused, true);
      assert.equal(again.closedEarly, false, 'served, not reset');
      await gw.waitForRecord((r) => r.action === 'egress-permitted', 5000);
      const rejected = gw.records.filter((r) => r.action === 'identity-rejected');
      assert.deepEqual(rejected, [], 'no resumed connection was refused');
    } finally {
      await fixture.close();
    }
  });
});

describe('TLS session resumption across workers', () => {
  it('serve --workers 2: a ticket from one worker resumes on the other', async () => {
    // PKI and target from the fixture; the gateway is a child process (a cluster), not startTestGateway.
    const targets = await startFixtureTargets({ httpEchoes: [], tcpEchoes: 1 });
    const { pki } = targets;
    const vsPort = await freePort(); // each worker listens itself: the port must be known up front
    const configPath = writeTestConfig(pki, {
      listeners: [
        { name: 'vs', listen: `127.0.0.1:${vsPort}`, mode: 'tcp', upstream: `127.0.0.1:${targets.tcpEchoPort}` },
      ],
      rules: [{ name: 'bookinfo', from: { namespaces: ['bookinfo'] }, action: 'allow' }],
      admin: { listen: '127.0.0.1:0', watch: false },
    });
    let cluster: ClusterGateway | undefined;
    try {
      cluster = await startClusterGateway(configPath, 2);
      const { adminPort } = cluster;
      const client = await pki.workload('bookinfo', 'productpage');
      const first = await connectOnce(vsPort, client, pki.rootPath);
      assert.equal(first.reused, false);
      assert.ok(first.session);
      // Each worker binds its own SO_REUSEPORT socket and the kernel picks one by the connection's
      // addresses, so reconnect until both workers have taken some (2^-39 odds of 40 to one worker).
      type Stats = { workers: Array<{ result: { listeners: Record<string, { accepted: number }> } }> };
      const perWorker = async () => {
        const stats = (await (await request(`http://127.0.0.1:${adminPort}/stats`)).body.json()) as Stats;
        return stats.workers.map((w) => w.result.listeners.vs?.accepted ?? 0);
      };
      const attempts = [];
      let counts: number[] = [];
      while (attempts.length < 40) {
        for (let i = 0; i < 6; i++)
          attempts.push(await connectOnce(vsPort, client, pki.rootPath, { session: first.session, untilEcho: 'x' }));
        counts = await pollUntil(
          perWorker,
          (c) => c.reduce((x, y) => x + y, 0) >= attempts.length + 1,
          10_000,
          `the workers to count all ${attempts.length + 1} connections`,
          100,
        );
        if (counts.every((n) => n >= 1)) break;
      }
      assert.equal(counts.length, 2);
      assert.ok(
        counts.every((n) => n >= 1),
        `both workers took connections (${counts.join(' + ')})`,
      );
      // Only the first connection was a full handshake: the worker that did not mint the ticket resumed it.
      assert.ok(
        attempts.every((a) => a.reused),
        `every reconnect resumes, whichever worker takes it: ${attempts.map((a) => a.reused).join(',')}`,
      );
    } finally {
      await cluster?.stop();
      await targets.close();
      rmSync(dirname(configPath), { recursive: true, force: true });
    }
  });
});
