import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { isGatewayError } from '../../src/core/errors.ts';
import { parseSpiffeId, type SpiffeId } from '../../src/identity/spiffe-id.ts';
import { compilePolicy, PolicyCompileError } from '../../src/policy/compile-policy.ts';
import { compileSpiffeGlob, spiffeIdMatches } from '../../src/policy/glob.ts';
import { fuzzOptions, tokenString } from './fuzz-options.ts';

const ID_TOKENS = [
  'spiffe://',
  'SPIFFE://',
  'spiffe:',
  'https://',
  '/',
  '//',
  '.',
  '..',
  'cluster',
  'local',
  'ns',
  'sa',
  'a',
  'Z',
  '0',
  '-',
  '_',
  '%',
  '%2F',
  '?',
  '#',
  '@',
  ':',
  ':443',
  ' ',
  '\\',
  'ü',
  'İ',
  '\u0000',
  '*',
  '**',
];
const tdChar = fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789.-_');
const segChar = fc.constantFrom(...'abcXYZ0189.-_');
const trustDomain = fc.string({ unit: tdChar, minLength: 1, maxLength: 30 });
const segment = fc.string({ unit: segChar, minLength: 1, maxLength: 12 }).filter((s) => s !== '.' && s !== '..');
const validId = fc
  .tuple(trustDomain, fc.array(segment, { maxLength: 6 }))
  .map(([td, segments]) => `spiffe://${td}${segments.map((s) => `/${s}`).join('')}`);
const anyId = fc.oneof(
  validId,
  tokenString(ID_TOKENS, 16),
  fc.tuple(fc.constantFrom('spiffe://', 'SPIFFE://', 'Spiffe://'), tokenString(ID_TOKENS, 12)).map(([a, b]) => a + b),
  validId.chain((id) =>
    fc
      .tuple(fc.nat({ max: id.length }), tokenString(ID_TOKENS, 2))
      .map(([at, t]) => id.slice(0, at) + t + id.slice(at)),
  ),
);

function parseOrError(input: string): SpiffeId | Error {
  try {
    return parseSpiffeId(input);
  } catch (error) {
    return error as Error;
  }
}

describe('fuzz: SPIFFE ID parser', () => {
  it('either refuses with EGW_IDENTITY_SPIFFE_ID_INVALID or returns an ID whose parse → print → parse is stable', () => {
    fc.assert(
      fc.property(anyId, (input) => {
        const id = parseOrError(input);
        if (id instanceof Error) {
          assert.ok(isGatewayError(id, 'EGW_IDENTITY_SPIFFE_ID_INVALID'), `${JSON.stringify(input)}: ${id}`);
          return;
        }
        assert.deepEqual(parseSpiffeId(id.uri), id);
        assert.equal(id.uri, `spiffe://${id.trustDomain}${id.path}`);
        assert.equal(id.path, id.segments.map((s) => `/${s}`).join(''));
        assert.match(id.trustDomain, /^[a-z0-9._-]{1,255}$/);
        for (const s of id.segments) assert.match(s, /^[A-Za-z0-9._-]+$/);
        assert.ok(!id.segments.includes('.') && !id.segments.includes('..'));
        assert.ok(Buffer.byteLength(id.uri) <= 2048);
        assert.equal(id.uri.toLowerCase().startsWith(input.slice(0, 9).toLowerCase()), true);
        const istio = id.segments.length === 4 && id.segments[0] === 'ns' && id.segments[2] === 'sa';
        assert.equal(id.namespace, istio ? id.segments[1] : undefined);
        assert.equal(id.serviceAccount, istio ? id.segments[3] : undefined);
      }),
      fuzzOptions(4000),
    );
  });

  it('accepts every ID built by the standard’s grammar and prints it unchanged', () => {
    fc.assert(
      fc.property(validId, (input) => {
        assert.equal(parseSpiffeId(input).uri, input);
      }),
      fuzzOptions(2000),
    );
  });

  it('matches an ID with its own exact glob and with a segment replaced by *, not with one segment more', () => {
    fc.assert(
      fc.property(validId, fc.nat(), segment, (input, pick, extra) => {
        const id = parseSpiffeId(input);
        assert.equal(spiffeIdMatches(compileSpiffeGlob(id.uri), id.uri), true);
        assert.equal(spiffeIdMatches(compileSpiffeGlob(id.uri), `${id.uri}/${extra}`), false);
        if (id.segments.length === 0) return;
        const i = pick % id.segments.length;
        const starred = id.segments.map((s, j) => (j === i ? '*' : s));
        const glob = compileSpiffeGlob(`spiffe://${id.trustDomain}/${starred.join('/')}`);
        assert.equal(spiffeIdMatches(glob, id.uri), true);
        assert.equal(spiffeIdMatches(compileSpiffeGlob(`spiffe://${id.trustDomain}/**`), id.uri), true);
      }),
      fuzzOptions(2000),
    );
  });

  it('compiles from.spiffeIds globs or names the key, and a compiled glob matches an ID built from it', () => {
    const globish = fc.oneof(
      anyId,
      fc
        .tuple(
          fc.constantFrom('spiffe://cluster.local', 'spiffe://other.td', 'SPIFFE://cluster.local'),
          tokenString(['/', 'ns', 'a', '*', '**', '.', '-', '%'], 8),
        )
        .map(([a, b]) => a + b),
    );
    fc.assert(
      fc.property(globish, (pattern) => {
        let rule: ReturnType<typeof compilePolicy>['rules'][number] | undefined;
        try {
          rule = compilePolicy([{ name: 'r', from: { spiffeIds: [pattern] }, action: 'allow' }], 'cluster.local', [])
            .rules[0];
        } catch (error) {
          assert.ok(error instanceof PolicyCompileError, `${JSON.stringify(pattern)}: ${error}`);
          assert.equal(error.path, 'rules[0].from.spiffeIds[0]');
          return;
        }
        const glob = rule?.from?.spiffeIds?.[0] ?? [];
        const id = parseSpiffeId(`spiffe://${glob.map((t) => (t === '*' || t === '**' ? 'x' : t)).join('/')}`);
        assert.equal(id.trustDomain, 'cluster.local');
        assert.equal(spiffeIdMatches(glob, id.uri), true, JSON.stringify(pattern));
      }),
      fuzzOptions(2000),
    );
  });
});
