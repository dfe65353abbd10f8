import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { auditUrl, parseRequestTarget } from '../../src/proxy/request-target.ts';

describe('parseRequestTarget (pure: CONNECT authority-form, absolute-form http://)', () => {
  it('reads CONNECT host:port into the canonical host', () => {
    assert.deepEqual(parseRequestTarget('CONNECT', 'API.example.com.:443'), {
      form: 'authority',
      host: 'api.example.com',
      port: 443,
    });
    assert.deepEqual(parseRequestTarget('CONNECT', '[::ffff:127.0.0.1]:80'), {
      form: 'authority',
      host: '::ffff:7f00:1',
      port: 80,
    });
  });

  it('reads an absolute-form http:// request: canonical host, default port, Host header and path', () => {
    const target = parseRequestTarget('GET', 'http://user:pw@Api.Example.com/a/b?x=1#frag');
    assert.equal(target.form, 'absolute');
    if (target.form !== 'absolute') return;
    assert.equal(target.host, 'api.example.com');
    assert.equal(target.port, 80);
    assert.equal(target.hostHeader, 'api.example.com');
    assert.equal(target.path, '/a/b?x=1');
    assert.equal(auditUrl(target.url), 'http://api.example.com/a/b?x=1#frag', 'no credentials in audit');
  });

  it('decides on, and sends, the reading by the URL parser of a short IPv4 host (never a second reading)', () => {
    const target = parseRequestTarget('GET', 'http://127.1:8080/');
    assert.equal(target.form === 'absolute' && `${target.host} ${target.hostHeader}`, '127.0.0.1 127.0.0.1:8080');
  });

  it('refuses what a proxy must not guess at, each with a reason', () => {
    const refused: Array<[string, string | undefined, RegExp]> = [
      ['CONNECT', 'api.example.com', /must be host:port/],
      ['CONNECT', 'api.example.com:0', /must be host:port/],
      ['CONNECT', '0127.0.0.1:443', /must be host:port/],
      ['CONNECT', undefined, /must be host:port/],
      ['GET', '/origin-form', /forward proxy/],
      ['GET', 'https://api.example.com/', /https:\/\/ is not supported/],
      ['GET', 'http://a..b.com/', /not a valid host name/],
    ];
    for (const [method, target, reason] of refused) {
      const parsed = parseRequestTarget(method, target);
      assert.equal(parsed.form, 'invalid', `${method} ${target}`);
      if (parsed.form === 'invalid') assert.match(parsed.reason, reason);
    }
  });

  it('parses the host it printed back to the same target (authority round trip)', () => {
    for (const target of ['a.example.com:1', '[2001:db8::1]:65535', '203.0.113.9:8080']) {
      const first = parseRequestTarget('CONNECT', target);
      assert.equal(first.form, 'authority', target);
      if (first.form !== 'authority') continue;
      const printed = first.host.includes(':') ? `[${first.host}]:${first.port}` : `${first.host}:${first.port}`;
      assert.deepEqual(parseRequestTarget('CONNECT', printed), first);
    }
  });
});
