import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { stringify } from 'yaml';
import { parseConfig } from '../../src/config/load-config.ts';
import { isGatewayError } from '../../src/core/errors.ts';

const listeners = [{ name: 'egress', listen: '127.0.0.1:0', mode: 'connect' }];
const files = { cert: 'gw.pem', key: 'gw.key', trustAnchors: 'ca.pem' };
const socket = 'unix:///run/spire/sockets/agent.sock';

function problems(identity: Record<string, unknown>): string[] {
  try {
    parseConfig(stringify({ identity: { trustDomain: 'cluster.local', ...identity }, listeners }), 'gw.yaml');
    return [];
  } catch (error) {
    assert.ok(isGatewayError(error, 'EGW_CONFIG_INVALID'), String(error));
    return (error.details.issues as string[]) ?? [];
  }
}

describe('identity.workloadApi configuration', () => {
  it('accepts either the three files or the Workload API socket', () => {
    assert.deepEqual(problems(files), []);
    assert.deepEqual(problems({ workloadApi: { socket } }), []);
    const config = parseConfig(
      stringify({ identity: { trustDomain: 'cluster.local', workloadApi: { socket } }, listeners }),
      'gw.yaml',
    );
    assert.equal(config.identity.workloadApi?.socket, socket);
  });

  it('refuses both forms at once, naming the file and each key', () => {
    assert.deepEqual(problems(files), []);
    assert.deepEqual(problems({ ...files, workloadApi: { socket } }), [
      'gw.yaml: identity.cert: not allowed with identity.workloadApi (the agent provides the SVID and bundles)',
      'gw.yaml: identity.key: not allowed with identity.workloadApi (the agent provides the SVID and bundles)',
      'gw.yaml: identity.trustAnchors: not allowed with identity.workloadApi (the agent provides the SVID and bundles)',
    ]);
  });

  it('refuses neither form, and a partial file form', () => {
    assert.deepEqual(problems(files), []);
    assert.equal(problems({}).length, 3);
    assert.deepEqual(problems({ cert: 'gw.pem', key: 'gw.key' }), [
      'gw.yaml: identity.trustAnchors: required unless identity.workloadApi is set',
    ]);
  });

  it('refuses several workers with the Workload API', () => {
    assert.deepEqual(problems({ workloadApi: { socket } }), []);
    try {
      parseConfig(
        stringify({ identity: { trustDomain: 'cluster.local', workloadApi: { socket } }, listeners, workers: 2 }),
        'gw.yaml',
      );
      assert.fail('accepted workers: 2');
    } catch (error) {
      assert.ok(isGatewayError(error, 'EGW_CONFIG_INVALID'));
      assert.match(error.message, /gw\.yaml: workers: must be 1 with identity\.workloadApi/);
    }
  });

  it('refuses a socket that is not a unix:/// URI, and unknown keys', () => {
    assert.deepEqual(problems({ workloadApi: { socket } }), []);
    assert.match(
      problems({ workloadApi: { socket: '/run/spire/sockets/agent.sock' } }).join('\n'),
      /gw\.yaml: identity\.workloadApi\.socket: expected unix:\/\/\//,
    );
    assert.match(problems({ workloadApi: { socket, retry: 1 } }).join('\n'), /gw\.yaml: identity\.workloadApi: /);
  });
});
