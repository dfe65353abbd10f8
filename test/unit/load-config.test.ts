import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { buildGatewayState } from '../../src/config/build-state.ts';
import { loadConfig, parseConfig } from '../../src/config/load-config.ts';
import { isGatewayError } from '../../src/core/errors.ts';
import { parseSpiffeId } from '../../src/identity/spiffe-id.ts';
import { decide } from '../../src/policy/decide.ts';
import { writeTestConfig } from '../helpers/test-gateway.ts';
import { createTestPki, type TestPki } from '../helpers/test-pki.ts';

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

describe('host rules at configuration load (what `config validate` runs)', () => {
  let pki: TestPki;
  before(async () => {
    pki = await createTestPki();
  });
  after(() => pki.cleanup());

  const listeners = [{ name: 'egress', listen: '127.0.0.1:0', mode: 'connect' }];
  async function build(rules: unknown[]) {
    const { config, path } = loadConfig(writeTestConfig(pki, { listeners, rules }));
    return { path, state: await buildGatewayState(config, path) };
  }
  async function refusal(rules: unknown[]): Promise<string> {
    try {
      await build(rules);
    } catch (error) {
      assert.ok(isGatewayError(error, 'EGW_CONFIG_INVALID'), String(error));
      return (error as Error).message;
    }
    assert.fail('expected the configuration to be rejected');
  }
  const allowAll = { name: 'allow-all', action: 'allow' };
  const examples: Array<[string, RegExp]> = [
    ['127.0.0.1', /is an IP address; .*to\.cidrs.*"127\.0\.0\.1\/32"/],
    ['203.0.113.*', /looks like an IPv4 address or range; .*"203\.0\.113\.0\/24"/],
    ['2001:DB8:0:0::1', /is an IP address; .*to\.cidrs.*"2001:DB8:0:0::1\/128"/],
  ];
  for (const [pattern, message] of examples) {
    it(`refuses a deny rule with to.hosts ${pattern}, naming file and key`, async () => {
      const ok = await build([{ name: 'deny-name', to: { hosts: ['api.example.com'] }, action: 'deny' }, allowAll]);
      assert.equal(ok.state.policy.rules.length, 2, 'positive control: a host name loads');
      const text = await refusal([
        allowAll,
        { name: 'other', to: { hosts: ['api.example.com'] }, action: 'allow' },
        { name: 'deny-ip', to: { hosts: ['api.example.com', pattern] }, action: 'deny' },
      ]);
      assert.match(text, /gateway\.yaml: rules\[2\]\.to\.hosts\[1\]: /);
      assert.match(text, message);
    });
  }

  it('loads the to.cidrs form and its deny rule decides live', async () => {
    const { state } = await build([
      {
        name: 'deny-loopback-one',
        to: { cidrs: ['127.0.0.1/32', '203.0.113.0/24', '2001:DB8:0:0::1/128'] },
        action: 'deny',
      },
      allowAll,
    ]);
    const identity = parseSpiffeId('spiffe://cluster.local/ns/bookinfo/sa/p');
    const at = (host: string, ip: string) =>
      decide(state.policy, { listener: 'egress', identity, destination: { host, ip, port: 443 } });
    assert.equal(at('127.0.0.2', '127.0.0.2').allow, true, 'positive control');
    for (const [host, ip] of [
      ['127.0.0.1', '127.0.0.1'],
      ['localhost', '127.0.0.1'],
      ['203.0.113.7', '203.0.113.7'],
      ['2001:db8::1', '2001:db8::1'],
    ] as const)
      assert.equal(at(host, ip).rule?.name, 'deny-loopback-one', host);
  });
});

// Found by test/fuzz/config-loader.test.ts (seed 0x0e9e55): document.toJS() threw a raw
// ReferenceError for an alias, so `config validate` printed a stack trace instead of
// EGW_CONFIG_INVALID.
describe('parseConfig and YAML aliases', () => {
  it('positive control: a YAML syntax error is EGW_CONFIG_INVALID naming the file', () => {
    assert.match(problems('identity: [unclosed'), /cfg\.yaml: YAML error/);
  });
  it('refuses an unresolved alias with EGW_CONFIG_INVALID', () => {
    assert.match(problems('  #\n*xidentity&x#'), /cfg\.yaml: /);
  });
  it('refuses an alias bomb with EGW_CONFIG_INVALID', () => {
    const bomb = ['a: &a [x, x, x, x, x, x, x, x, x, x]'];
    for (let i = 0; i < 8; i++)
      bomb.push(
        `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [${Array(10)
          .fill(`*${String.fromCharCode(97 + i)}`)
          .join(', ')}]`,
      );
    assert.match(problems(bomb.join('\n')), /cfg\.yaml: /);
  });
});
