import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseConfig } from '../../src/config/load-config.ts';
import { isGatewayError } from '../../src/core/errors.ts';
import { compilePolicy, PolicyCompileError } from '../../src/policy/compile-policy.ts';

function configWith(rule: string): string {
  return [
    'identity: { trustDomain: cluster.local, cert: c.pem, key: k.pem, trustAnchors: a.pem }',
    'listeners: [{ name: egress, listen: "127.0.0.1:0", mode: connect }]',
    `rules: [${rule}]`,
    '',
  ].join('\n');
}

function problem(via: string): string {
  try {
    parseConfig(configWith(`{ name: r, action: allow, via: "${via}" }`), 'gw.yaml');
  } catch (error) {
    assert.ok(isGatewayError(error, 'EGW_CONFIG_INVALID'));
    return error.message;
  }
  return '';
}

describe('rules[].via: a parent proxy URL, validated with key and file in every message', () => {
  it('accepts http://host:port and compiles it to a canonical host and port', () => {
    const config = parseConfig(
      configWith('{ name: r, action: allow, via: "http://Proxy.Corp.Example:3128/" }'),
      'gw.yaml',
    );
    const [rule] = compilePolicy(config.rules, 'cluster.local', ['egress']).rules;
    assert.deepEqual(rule?.via, { host: 'proxy.corp.example', port: 3128, url: 'http://Proxy.Corp.Example:3128/' });
    assert.equal(problem('http://[::1]:8888'), '');
  });

  it('refuses other schemes, credentials, a missing or bad port, and a path', () => {
    assert.match(problem('https://proxy:3128'), /gw\.yaml: rules\[0\]\.via: only an http:\/\/ parent proxy/);
    assert.match(problem('http://user:secret@proxy:3128'), /gw\.yaml: rules\[0\]\.via: credentials in the URL/);
    assert.match(problem('http://proxy'), /gw\.yaml: rules\[0\]\.via: expected http:\/\/host:port/);
    assert.match(problem('http://proxy:0'), /gw\.yaml: rules\[0\]\.via: the port must be from 1 to 65535/);
    assert.match(problem('http://proxy:3128/path'), /gw\.yaml: rules\[0\]\.via: expected http:\/\/host:port/);
  });

  it('refuses a host without a canonical spelling and a deny rule with a parent', () => {
    const compile = (rule: string) => {
      const config = parseConfig(configWith(rule), 'gw.yaml');
      return () => compilePolicy(config.rules, 'cluster.local', ['egress']);
    };
    assert.doesNotThrow(compile('{ name: r, action: allow, via: "http://10.0.0.8:3128" }'));
    assert.throws(
      compile('{ name: r, action: allow, via: "http://127.1:3128" }'),
      (e) => e instanceof PolicyCompileError && e.path === 'rules[0].via',
    );
    assert.throws(
      compile('{ name: r, action: deny, via: "http://10.0.0.8:3128" }'),
      (e) => e instanceof PolicyCompileError && /only an allow rule/.test(e.message),
    );
  });
});
