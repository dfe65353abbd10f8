import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { auditConfigSchema } from '../../src/audit/audit-config-schema.ts';
import type { AuditHub } from '../../src/audit/audit-hub.ts';
import { buildAuditHub } from '../../src/audit/build-audit-hub.ts';
import type { SinkStats } from '../../src/audit/sinks/audit-sink.ts';
import { pollUntil } from '../helpers/poll-until.ts';
import { permittedRecord, rejectedRecord } from './helpers/sample-records.ts';

function statsOf(hub: AuditHub): SinkStats {
  return Object.values(hub.stats())[0] as SinkStats;
}

function lines(path: string): string[] {
  return readFileSync(path, 'utf8').split('\n').filter(Boolean);
}

describe('file and stdout sinks', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'egw-audit-file-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('appends one line per record to an existing file, creating missing directories with mode 0640', async () => {
    const path = join(dir, 'nested/deeper/audit.jsonl');
    const hub = buildAuditHub(auditConfigSchema.parse({ sinks: [{ type: 'file', path, format: 'ecs' }] }));
    hub.start();
    hub.deliver(permittedRecord());
    await hub.flush(2000);
    writeFileSync(path, 'written by someone else\n', { flag: 'a' });
    const record = rejectedRecord();
    hub.deliver(record);
    await hub.close(2000);
    const all = lines(path);
    assert.equal(all.length, 3);
    assert.equal(all[1], 'written by someone else');
    assert.equal(JSON.parse(all[2] as string).event.id, record.id);
    assert.equal(statSync(path).mode & 0o777, 0o640);
    assert.deepEqual([statsOf(hub).delivered, statsOf(hub).dropped], [2, 0]);
  });

  it('resolves a relative path against the working directory', async () => {
    const cwd = process.cwd();
    process.chdir(dir);
    let hub: AuditHub;
    try {
      hub = buildAuditHub(
        auditConfigSchema.parse({ sinks: [{ type: 'file', path: 'relative/audit.log', format: 'text' }] }),
      );
    } finally {
      process.chdir(cwd);
    }
    hub.start();
    hub.deliver(permittedRecord());
    await hub.close(2000);
    assert.match(
      lines(join(dir, 'relative/audit.log'))[0] ?? '',
      / PERMITTED spiffe:\/\/prod\.example\.org\/ns\/payments\/sa\/checkout /,
    );
  });

  it('reopens the path on reopen() (SIGUSR1), so logrotate can rename the file underneath', async () => {
    const path = join(dir, 'rotate.log');
    const hub = buildAuditHub(auditConfigSchema.parse({ sinks: [{ type: 'file', path, format: 'cef' }] }));
    hub.start();
    hub.deliver(permittedRecord());
    hub.deliver(permittedRecord());
    await hub.flush(2000);
    renameSync(path, `${path}.1`); // logrotate: rename, then signal
    hub.deliver(permittedRecord()); // still goes to the renamed file: the descriptor is the same
    await hub.flush(2000);
    hub.reopen();
    hub.deliver(rejectedRecord());
    await hub.close(2000);
    assert.equal(lines(`${path}.1`).length, 3);
    const fresh = lines(path);
    assert.equal(fresh.length, 1);
    assert.match(fresh[0] ?? '', /^CEF:0\|.*\|egress-rejected\|/);
    assert.equal(statsOf(hub).delivered, 4);
  });

  it('keeps records queued, without throwing, while the file cannot be written, and drops them at shutdown', async () => {
    const blocker = join(dir, 'not-a-directory');
    writeFileSync(blocker, '');
    const logs: string[] = [];
    const hub = buildAuditHub(
      auditConfigSchema.parse({ sinks: [{ type: 'file', path: join(blocker, 'audit.log') }] }),
      { log: (l) => logs.push(l) },
    );
    hub.start();
    hub.deliver(permittedRecord());
    hub.deliver(permittedRecord());
    // The open failed once it has left its error: poll for that, not a fixed sleep.
    const down = await pollUntil(
      () => statsOf(hub),
      (stats) => stats.lastError !== undefined,
      5_000,
      'the failed open',
    );
    assert.equal(down.up, false);
    assert.equal(down.queued, 2);
    assert.match(down.lastError ?? '', /ENOTDIR|EEXIST/);
    assert.equal(logs.filter((l) => l.includes('EGW_AUDIT_SINK_UNAVAILABLE')).length, 1, logs.join('\n'));
    await hub.close(200);
    const final = statsOf(hub);
    assert.deepEqual([final.received, final.delivered, final.dropped, final.queued], [2, 0, 2, 0]);
    assert.deepEqual(final.droppedBy, { shutdown: 2 });
  });

  it('never blocks the caller when nobody reads stdout: the bounded queue drops and counts instead', async () => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', new URL('./helpers/stalled-stdout-child.ts', import.meta.url).pathname, '5000'],
      {
        stdio: ['pipe', 'pipe', 'pipe'],
      },
    );
    child.stdout.pause(); // the "log collector" is stuck
    let stderr = '';
    child.stderr.on('data', (chunk) => {
      stderr += chunk;
    });
    // A failed assertion must not leave the stalled child (and with it this test file) running.
    try {
      const phase = async (name: string) => {
        const deadline = Date.now() + 30_000;
        for (;;) {
          const line = stderr.split('\n').find((l) => l.includes(`"phase":"${name}"`));
          if (line) return JSON.parse(line) as { elapsedMs: number; slowestWriteMs: number; stats: SinkStats };
          if (Date.now() > deadline || child.exitCode !== null)
            throw new Error(`child did not report ${name}: ${stderr}`);
          await new Promise((r) => setTimeout(r, 50));
        }
      };
      // 5,000 ECS records are about 10 MB against a 64 KiB pipe nobody reads: a blocking write()
      // would never let the child report this phase. (No timing assertion: this is a behaviour test.)
      const written = await phase('written');
      assert.ok(
        written.stats.dropped > 4000,
        `a stalled stdout fills the queue (100) and the rest is dropped: ${JSON.stringify(written.stats)}`,
      );
      assert.equal(written.stats.droppedBy.queue_full, written.stats.dropped);
      let out = '';
      child.stdout.on('data', (chunk) => {
        out += chunk;
      });
      child.stdout.resume();
      child.stdin.end('go\n');
      const closed = await phase('closed');
      await new Promise((r) => (child.exitCode !== null ? r(null) : child.once('exit', r)));
      const received = out.split('\n').filter(Boolean);
      assert.equal(received.length, closed.stats.delivered, 'every record counted as delivered is on stdout');
      assert.equal(closed.stats.delivered + closed.stats.dropped, 5000);
      for (const line of received) assert.equal(JSON.parse(line).event.action, 'egress-permitted');
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});
