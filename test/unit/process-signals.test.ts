import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, it } from 'node:test';

const module = new URL('../../src/gateway/process-signals.ts', import.meta.url).href;

/** A child process that installs the signal contract and prints what it does. */
const script = `
import { handleSignals } from ${JSON.stringify(module)};
handleSignals({
  stopSignals: ['SIGTERM'],
  stop: async (signal) => {
    console.log('stop ' + signal);
    await new Promise((r) => setTimeout(r, 200));
    process.exit(0);
  },
  reload: () => console.log('reload'),
});
setInterval(() => {}, 1000);
console.log('ready');
`;

describe('process signals', () => {
  it('reloads on SIGHUP without dying, ignores SIGINT when told to, and stops once on SIGTERM', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (chunk) => {
      out += chunk;
    });
    const waitFor = async (pattern: RegExp) => {
      const deadline = Date.now() + 15_000;
      while (!pattern.test(out) && Date.now() < deadline && child.exitCode === null)
        await new Promise((r) => setTimeout(r, 20));
      assert.match(out, pattern);
    };
    try {
      await waitFor(/ready\n/);
      child.kill('SIGHUP');
      await waitFor(/reload\n/);
      child.kill('SIGHUP');
      await waitFor(/reload\nreload\n/);
      const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
      child.kill('SIGINT');
      child.kill('SIGTERM');
      await waitFor(/stop SIGTERM\n/);
      child.kill('SIGTERM'); // a second SIGTERM while stopping does not stop again
      assert.equal(await exited, 0);
      assert.deepEqual(out.trim().split('\n'), ['ready', 'reload', 'reload', 'stop SIGTERM']);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});
