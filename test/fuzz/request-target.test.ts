import assert from 'node:assert/strict';
import { isIP } from 'node:net';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { canonicalHost } from '../../src/core/host-name.ts';
import { parseAuthority, parseRequestTarget } from '../../src/proxy/request-target.ts';
import { fuzzOptions, tokenString } from './fuzz-options.ts';

// CONNECT's authority-form parser is exported as a pure function (parseAuthority). The
// absolute-form target is parsed inline in connect-mode.ts (WHATWG URL, then canonicalHost), so
// it is fuzzed here as that composition until it is extracted.
const TARGET_TOKENS = [
  'a',
  'B',
  'example',
  'com',
  '.',
  '..',
  '-',
  '_',
  ':',
  '::',
  '1',
  '80',
  '443',
  '0',
  '65535',
  '65536',
  '99999',
  '[',
  ']',
  '::1',
  '@',
  'user',
  '/',
  '?',
  '#',
  '%',
  '%61',
  '\\',
  ' ',
  '\t',
  'ü',
  '\u3002',
  '\uff0e',
  '0x7f',
  '127.1',
];
const port = fc.integer({ min: 1, max: 65535 });
const host = fc.oneof(
  fc.domain(),
  fc.ipV4(),
  fc.ipV6().map((ip) => `[${ip}]`),
);
const wellFormed = fc.tuple(host, port).map(([h, p]) => `${h}:${p}`);
const anyTarget = fc.oneof(
  wellFormed,
  tokenString(TARGET_TOKENS, 14),
  fc.tuple(tokenString(TARGET_TOKENS, 6), port).map(([h, p]) => `${h}:${p}`),
  wellFormed.chain((t) =>
    fc
      .tuple(fc.nat({ max: t.length }), tokenString(TARGET_TOKENS, 2))
      .map(([at, x]) => t.slice(0, at) + x + t.slice(at)),
  ),
);
const print = (target: { host: string; port: number }) =>
  `${isIP(target.host) === 6 ? `[${target.host}]` : target.host}:${target.port}`;

describe('fuzz: request targets', () => {
  it('CONNECT targets: a canonical host and a valid port, and parse → print → parse is stable', () => {
    fc.assert(
      fc.property(anyTarget, (raw) => {
        const target = parseAuthority(raw);
        if (!target) return;
        assert.ok(Number.isInteger(target.port) && target.port >= 1 && target.port <= 65535, raw);
        assert.equal(canonicalHost(target.host), target.host, raw);
        assert.deepEqual(parseAuthority(print(target)), target, raw);
      }),
      fuzzOptions(4000),
    );
  });

  it('accepts a well-formed host:port exactly when its host has a canonical spelling', () => {
    fc.assert(
      fc.property(host, port, (h, p) => {
        const canonical = canonicalHost(h);
        assert.deepEqual(
          parseAuthority(`${h}:${p}`),
          canonical === undefined ? undefined : { host: canonical, port: p },
        );
      }),
      fuzzOptions(2000),
    );
  });

  it('absolute-form reads the same host and port as CONNECT for every target CONNECT accepts', () => {
    fc.assert(
      fc.property(anyTarget, fc.constantFrom('/', '/a?b=1', '/%2e%2e/x'), (raw, path) => {
        const target = parseAuthority(raw);
        if (!target) return;
        const parsed = parseRequestTarget('GET', `http://${raw}${path}`);
        assert.equal(parsed.form, 'absolute', raw);
        if (parsed.form !== 'absolute') return;
        assert.equal(parsed.host, target.host, raw);
        assert.equal(parsed.port, target.port, raw);
        assert.ok(parsed.path.startsWith('/'), `origin-form path for ${raw}${path}: ${parsed.path}`);
        assert.equal(canonicalHost(parsed.host), parsed.host, 'the parsed host is canonical');
      }),
      fuzzOptions(3000),
    );
  });

  it('parseRequestTarget: CONNECT takes authority-form only, other methods absolute http:// only', () => {
    fc.assert(
      fc.property(fc.constantFrom('CONNECT', 'connect', 'GET', 'POST'), anyTarget, (method, raw) => {
        const viaConnect = method.toUpperCase() === 'CONNECT';
        const parsed = parseRequestTarget(method, viaConnect ? raw : `http://${raw}/`);
        if (viaConnect) {
          // Exactly what parseAuthority accepts, and nothing else.
          const authority = parseAuthority(raw);
          assert.equal(parsed.form, authority ? 'authority' : 'invalid', raw);
          if (parsed.form === 'authority') assert.deepEqual({ host: parsed.host, port: parsed.port }, authority);
        } else {
          assert.notEqual(parsed.form, 'authority', raw);
          // Origin-form and other schemes are refused whatever follows.
          assert.equal(parseRequestTarget(method, `/${raw}`).form, 'invalid');
          assert.equal(parseRequestTarget(method, `https://${raw}/`).form, 'invalid');
        }
      }),
      fuzzOptions(3000),
    );
  });
});
