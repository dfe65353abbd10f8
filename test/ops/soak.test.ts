import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runCommand } from '../helpers/run-command.ts';

/** The short soak (issue 9 "Must have" 8) as part of npm test: a few hundred mixed connections. */
describe('npm run soak -- --short', () => {
  it('leaves no tunnel, limiter count, socket or unpaired audit record behind', async () => {
    const repo = new URL('../..', import.meta.url).pathname;
    const result = await runCommand(process.execPath, ['--import', 'tsx', `${repo}bench/soak.ts`, '--short'], {
      timeoutMs: 150_000,
    });
    assert.match(result.stdout, /"attempted": \d+/, result.stdout + result.stderr);
    assert.equal(result.code, 0, result.stdout + result.stderr);
    assert.match(result.stdout, /soak passed/);
    const summary = JSON.parse(result.stdout.slice(0, result.stdout.lastIndexOf('}') + 1));
    assert.ok(summary.permitted > 100 && summary.permitted === summary.closed, JSON.stringify(summary));
  });
});
