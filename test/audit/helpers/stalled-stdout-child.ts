/**
 * Child process for append-sink.test.ts: writes records to an stdout sink while the parent
 * does not read the pipe, and reports how long each `write` took. Protocol on stderr: one JSON
 * line after writing, then (after the parent starts reading and sends "go" on stdin) one
 * JSON line with the final stats after close.
 */
import { once } from 'node:events';
import { formatEcs } from '../../../src/audit/formats/ecs-format.ts';
import { AppendSink } from '../../../src/audit/sinks/append-sink.ts';
import { permittedRecord } from './sample-records.ts';

const count = Number(process.argv[2] ?? 5000);
const sink = new AppendSink('stdout#0', { kind: 'stdout' }, formatEcs, { queueSize: 100, log: () => {} });
let slowest = 0;
const started = performance.now();
for (let i = 0; i < count; i += 1) {
  const record = permittedRecord();
  const t = performance.now();
  sink.write(record);
  slowest = Math.max(slowest, performance.now() - t);
  // Let the event loop turn now and then, as a real data path does between connections.
  if (i % 100 === 0) await new Promise((r) => setImmediate(r));
}
process.stderr.write(
  `${JSON.stringify({ phase: 'written', elapsedMs: performance.now() - started, slowestWriteMs: slowest, stats: sink.stats() })}\n`,
);
process.stdin.setEncoding('utf8');
await once(process.stdin, 'data');
await sink.flush(10_000);
await sink.close();
process.stderr.write(`${JSON.stringify({ phase: 'closed', stats: sink.stats() })}\n`);
