import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { curlViaGateway } from '../helpers/curl.ts';
import { type GatewayFixture, startGatewayFixture } from '../helpers/gateway-fixture.ts';
import { pollUntil, waitUntil } from '../helpers/poll-until.ts';
import type { TestGateway } from '../helpers/test-gateway.ts';
import type { TestPki, WrittenLeaf } from '../helpers/test-pki.ts';

const ATTACKER = '127.0.0.5';

/** The value of one Prometheus series from the admin API (0 when absent). */
async function metric(gw: TestGateway, series: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${gw.gateway.adminAddress?.port}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

interface IdleAttack {
  /** Lifetimes (connect → close, ms) of every attacker socket that has closed. */
  readonly lifetimes: number[];
  opened(): number;
  stop(): Promise<void>;
}

/**
 * Holds `count` TCP sockets from `source` that never send a byte, re-opening each one a second
 * after it is closed, like the attacker of issue 9 (bounded: at most `maxOpens` in all).
 */
function idleAttack(port: number, source: string, count: number, maxOpens: number): IdleAttack {
  const lifetimes: number[] = [];
  const live = new Set<import('node:net').Socket>();
  let opened = 0;
  let running = true;
  const open = () => {
    if (!running || opened >= maxOpens) return;
    opened += 1;
    const socket = tcpConnect({ host: '127.0.0.1', port, localAddress: source });
    live.add(socket);
    let connectedAt = 0;
    socket.on('error', () => {});
    socket.once('connect', () => {
      connectedAt = Date.now();
    });
    socket.once('close', () => {
      live.delete(socket);
      if (connectedAt > 0) lifetimes.push(Date.now() - connectedAt);
      setTimeout(open, 1000).unref();
    });
  };
  for (let i = 0; i < count; i++) open();
  return {
    lifetimes,
    opened: () => opened,
    async stop() {
      running = false;
      for (const socket of live) socket.destroy();
      // Best effort, in a finally: a socket still open here must not hide the test's own failure.
      await waitUntil(() => live.size === 0, 5000, 'the attacker sockets to close', 20).catch(() => {});
    },
  };
}

describe('attack: idle sockets from one source (issue 9, found 5)', () => {
  let pki: TestPki;
  let gw: TestGateway;
  let url: string;
  let client: WrittenLeaf;
  let auditDir: string;
  let fixture: GatewayFixture;

  before(async () => {
    auditDir = mkdtempSync(join(tmpdir(), 'egw-idle-audit-'));
    fixture = await startGatewayFixture(() => ({
      // The aggregate record goes through the same sinks as every other record.
      audit: { sinks: [{ type: 'file', path: join(auditDir, 'audit.log'), format: 'text' }] },
      // maxConnections below the per-source cap: if idle sockets still counted against it, the
      // 64 an attacker may hold would lock every legitimate client out.
      listeners: [{ name: 'egress', listen: '127.0.0.1:0', mode: 'connect', maxConnections: 50 }],
      rules: [{ name: 'local', to: { cidrs: ['127.0.0.0/8'] }, action: 'allow' }],
      limits: { preHandshakeAuditInterval: '1s' },
      // A handshake timeout far above the 2 s first-byte deadline, so the two are told apart by a
      // wide margin even on a loaded machine (the attacker shares this process's event loop).
      timeouts: { handshake: '60s' },
      admin: { listen: '127.0.0.1:0', watch: false },
    }));
    ({ pki, gw } = fixture);
    url = `http://127.0.0.1:${fixture.echoPort}/`;
    client = await pki.workload('bookinfo', 'productpage');
  });
  after(async () => {
    await fixture?.close();
    rmSync(auditDir, { recursive: true, force: true });
  });

  it('serves a legitimate client while one source holds 1,000 idle sockets, and audits them in aggregate', async (t) => {
    const first = await curlViaGateway(gw.port('egress'), client, pki.rootPath, url, [
      '-p',
      '-w',
      '\ntime_total=%{time_total}',
    ]);
    assert.equal(first.code, 0, `positive control: ${first.stderr}`);
    t.diagnostic(`CONNECT before the attack: ${/time_total=(\S+)/.exec(first.stdout)?.[1]} s`);

    const attack = idleAttack(gw.port('egress'), ATTACKER, 1000, 6000);
    try {
      const held = await pollUntil(
        () => metric(gw, 'egw_prehandshake_sockets{listener="egress"}'),
        (n) => n >= 64,
        10_000,
        'the attacker to hold 64 pre-handshake sockets',
        100,
      );
      assert.equal(held, 64, 'the source holds exactly maxPreHandshakeSocketsPerSource sockets');
      const capped = await pollUntil(
        () => metric(gw, 'egw_prehandshake_rejections_total{listener="egress",reason="source_limit"}'),
        (n) => n >= 900,
        10_000,
        '900 refusals at the per-source cap',
        100,
      );
      assert.ok(capped >= 900, `refused beyond the per-source cap: ${capped}`);
      for (let i = 0; i < 3; i++) {
        const during = await curlViaGateway(gw.port('egress'), client, pki.rootPath, url, [
          '-p',
          '-w',
          '\ntime_total=%{time_total}',
        ]);
        assert.equal(during.code, 0, `under attack, request ${i + 1}: ${during.stderr}`);
        assert.match(during.stdout, /GET/);
        t.diagnostic(`CONNECT under attack ${i + 1}: ${/time_total=(\S+)/.exec(during.stdout)?.[1]} s`);
      }
      // The held sockets are closed at the 2 s first-byte deadline, long before the 60 s handshake timeout.
      const timedOut = await pollUntil(
        () => metric(gw, 'egw_prehandshake_rejections_total{listener="egress",reason="first_byte_timeout"}'),
        (n) => n >= 64,
        10_000,
        '64 sockets closed at the first-byte deadline',
        100,
      );
      assert.ok(timedOut >= 64, `closed at the first-byte deadline: ${timedOut}`);
      const heldLifetimes = attack.lifetimes.filter((ms) => ms >= 1000);
      assert.ok(heldLifetimes.length >= 64, `${heldLifetimes.length} sockets were held, then closed`);
      assert.ok(Math.max(...heldLifetimes) < 30_000, `longest idle socket lived ${Math.max(...heldLifetimes)} ms`);
      assert.ok(attack.opened() > 1000, 'the attacker re-opened closed sockets');
    } finally {
      await attack.stop();
    }

    const idle = await pollUntil(
      () => metric(gw, 'egw_prehandshake_sockets{listener="egress"}'),
      (n) => n === 0,
      5000,
      'every pre-handshake socket to be released',
      100,
    );
    assert.equal(idle, 0, 'every pre-handshake socket was released');
    const refused =
      (await metric(gw, 'egw_prehandshake_rejections_total{listener="egress",reason="source_limit"}')) +
      (await metric(gw, 'egw_prehandshake_rejections_total{listener="egress",reason="first_byte_timeout"}'));
    // One record per source and interval: wait for the last interval to be reported.
    const audited = () =>
      gw.records
        .filter((r) => r.action === 'handshake-refused-aggregate' && r.source.ip === ATTACKER)
        .reduce((sum, r) => sum + (r.refusals?.total ?? 0), 0);
    await pollUntil(audited, (n) => n >= refused, 5000, `aggregate records for ${refused} refusals`, 100);
    const aggregates = gw.records.filter((r) => r.action === 'handshake-refused-aggregate');
    assert.equal(audited(), refused, 'the aggregate records account for every refusal the metrics counted');
    assert.ok(aggregates.length < refused / 20, `${aggregates.length} records for ${refused} refused sockets`);
    t.diagnostic(`${attack.opened()} attacker sockets opened, ${refused} refused, ${aggregates.length} audit records`);
    const sample = aggregates.find((r) => (r.refusals?.byReason.source_limit ?? 0) > 0);
    assert.equal(sample?.code, 'EGW_PREHANDSHAKE_REFUSED');
    assert.match(sample?.reason ?? '', /source_limit=\d+/);
    const logPath = join(auditDir, 'audit.log');
    const logged = await pollUntil(
      () => (existsSync(logPath) ? readFileSync(logPath, 'utf8') : ''),
      (text) => text.includes(`HANDSHAKE-REFUSED-AGGREGATE ${ATTACKER}:0`),
      5000,
      'the aggregate record in the audit file',
      100,
    );
    assert.match(logged, new RegExp(`HANDSHAKE-REFUSED-AGGREGATE ${ATTACKER.replaceAll('.', '\\.')}:0 .*count=\\d+`));
    assert.equal(
      gw.records.filter((r) => r.action !== 'handshake-refused-aggregate' && r.source.ip === ATTACKER).length,
      0,
      'no per-socket record for the attacker',
    );
  });
});
