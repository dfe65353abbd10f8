import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';

const root = new URL('../../', import.meta.url);

// In a fresh Node, imports the composition root, then the Workload API source, and prints the npm
// packages the CommonJS loader holds after each: what `serve` pays for before its listeners bind.
const probe = `
import { createRequire } from 'node:module';
const cache = createRequire(import.meta.url).cache;
const loaded = () => [...new Set(Object.keys(cache).map((p) => p.match(/node_modules\\/((@[^/]+\\/)?[^/]+)/)?.[1]).filter(Boolean))];
await import(new URL('src/main.ts', process.argv[1]).href);
const atStart = loaded();
await import(new URL('src/sources/workload-api/workload-api-source.ts', process.argv[1]).href);
console.log(JSON.stringify({ atStart, withWorkloadApi: loaded() }));
`;

test('start-up loads neither @grpc nor undici; the Workload API source does load @grpc (issue 11 item 1)', () => {
  const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', probe, root.href], {
    cwd: root,
    encoding: 'utf8',
  });
  const { atStart, withWorkloadApi } = JSON.parse(out) as { atStart: string[]; withWorkloadApi: string[] };
  // Positive controls: the probe sees packages the composition root does load, and @grpc once asked for.
  assert.ok(atStart.includes('fastify'), `fastify expected among ${atStart.join(', ')}`);
  assert.ok(withWorkloadApi.includes('@grpc/grpc-js'));
  assert.equal(atStart.includes('@grpc/grpc-js'), false);
  assert.equal(atStart.includes('undici'), false);
});
