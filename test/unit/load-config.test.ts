import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseConfig } from '../../src/config/load-config.ts';
import { isGatewayError } from '../../src/core/errors.ts';

const base = `
identity: { trustDomain: cluster.local, trustAnchors: a.pem, cert: c.pem, key: k.pem }
listeners:
  - { name: egress, listen: "127.0.0.1:3128", mode: connect }
`;

function problems(text: string): string {
  try {
    parseConfig(text, 'cfg.yaml');
  } catch (error) {
    assert.ok(isGatewayError(error, 'EGW_CONFIG_INVALID'), String(error));
    return (error as Error).message;
  }
  assert.fail('expected the configuration to be rejected');
}

describe('parseConfig', () => {
  it('fills defaults, and freezes the result', () => {
    const config = parseConfig(base, 'cfg.yaml');
    assert.equal(config.timeouts.handshake, 10_000);
    assert.equal(config.timeouts.idle, 300_000);
    assert.deepEqual(config.rules, []);
    assert.deepEqual(config.audit.sinks, [{ type: 'stdout', format: 'ecs' }]);
    assert.ok(Object.isFrozen(config.listeners[0]));
    assert.throws(() => {
      (config.listeners as unknown as unknown[]).push({});
    });
  });

  it('parses durations like 30s and 5m', () => {
    const config = parseConfig(`${base}timeouts: { idle: 5m, connect: 30s, handshake: 1500 }\n`, 'cfg.yaml');
    assert.equal(config.timeouts.idle, 300_000);
    assert.equal(config.timeouts.connect, 30_000);
    assert.equal(config.timeouts.handshake, 1_500);
  });

  it('names the file and key path of a bad value', () => {
    assert.match(
      problems(base.replace('127.0.0.1:3128', 'not-an-address')),
      /cfg\.yaml: listeners\[0\]\.listen: expected host:port/,
    );
  });

  it('rejects unknown keys (typos never fall back to defaults)', () => {
    assert.match(problems(`${base}rulez: []\n`), /cfg\.yaml: .*rulez/);
  });

  it('rejects a SNAT value that is not an IP address', () => {
    assert.match(
      problems(base.replace('mode: connect', 'mode: connect, snat: egress-ip')),
      /listeners\[0\]\.snat: expected an IP address/,
    );
  });

  it('requires an upstream for tcp listeners and forbids it for connect listeners', () => {
    assert.match(
      problems(base.replace('mode: connect', 'mode: tcp')),
      /listeners\[0\]\.upstream: required when mode is tcp/,
    );
    assert.match(
      problems(base.replace('mode: connect', 'mode: connect, upstream: "127.0.0.1:1"')),
      /listeners\[0\]\.upstream: only valid when mode is tcp/,
    );
  });

  it('rejects duplicate listener names', () => {
    assert.match(
      problems(`${base}  - { name: egress, listen: "127.0.0.1:3129", mode: connect }\n`),
      /listeners\[1\]\.name: duplicate/,
    );
  });

  it('rejects a bad duration and says what it expected', () => {
    assert.match(problems(`${base}timeouts: { idle: soon }\n`), /timeouts\.idle: expected a duration/);
  });

  it('reports YAML syntax errors with the file name', () => {
    assert.match(problems('identity: [unclosed'), /cfg\.yaml: YAML error/);
  });

  it('names identity.trustDomain for an upper-case trust domain', () => {
    assert.match(
      problems(base.replace('trustDomain: cluster.local', 'trustDomain: Cluster.Local')),
      /cfg\.yaml: identity\.trustDomain: a SPIFFE trust domain is lower-case/,
    );
  });

  it('rejects a port above 65535', () => {
    assert.match(
      problems(base.replace('127.0.0.1:3128', '127.0.0.1:99999')),
      /listeners\[0\]\.listen: the port must be from 0 to 65535/,
    );
  });

  it('rejects an unknown rule action', () => {
    assert.match(problems(`${base}rules: [{ name: r, action: permit }]\n`), /rules\[0\]\.action/);
  });
});
