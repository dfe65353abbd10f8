import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { runCli } from '../helpers/run-command.ts';
import { createTestPki, type TestPki } from '../helpers/test-pki.ts';

// The CLI never dials the agent: what it says about a Workload API config without one.

describe('the CLI with identity.workloadApi', () => {
  let pki: TestPki;
  let dir: string;
  let filesPath: string;
  let apiPath: string;

  before(async () => {
    pki = await createTestPki();
    dir = mkdtempSync(join(tmpdir(), 'egw-wl-cli-'));
    const listeners = [{ name: 'egress', listen: '127.0.0.1:0', mode: 'connect' }];
    const files = { cert: pki.gateway.certPath, key: pki.gateway.keyPath, trustAnchors: pki.intermediatePath };
    filesPath = join(dir, 'files.yaml');
    writeFileSync(filesPath, stringify({ identity: { trustDomain: 'cluster.local', ...files }, listeners }));
    apiPath = join(dir, 'api.yaml');
    const workloadApi = { socket: `unix://${join(dir, 'agent.sock')}` };
    writeFileSync(apiPath, stringify({ identity: { trustDomain: 'cluster.local', workloadApi }, listeners }));
  });
  after(() => {
    rmSync(dir, { recursive: true, force: true });
    pki.cleanup();
  });

  it('config validate says there is no SVID yet', async () => {
    const control = await runCli(['config', 'validate', '--config', filesPath]);
    assert.equal(control.code, 0, control.stderr);
    const result = await runCli(['config', 'validate', '--config', apiPath]);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /EGW_CONFIG_INVALID.*identity\.workloadApi: no SVID from the agent yet/);
  });

  it('serve --workers 2 is refused before anything is forked', async () => {
    const control = await runCli(['serve', '--workers', '0', '--config', apiPath]);
    assert.match(control.stderr, /--workers: expected a whole number from 1 to 64/);
    const result = await runCli(['serve', '--workers', '2', '--config', apiPath]);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /EGW_CONFIG_INVALID.*--workers: must be 1 with identity\.workloadApi/);
  });
});
