import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compileHostGlob, compileSpiffeGlob, hostMatches, spiffeIdMatches } from '../../src/policy/glob.ts';

describe('host globs', () => {
  const cases: Array<[string, string, boolean]> = [
    ['*.example.com', 'api.example.com', true],
    ['*.example.com', 'example.com', false],
    ['*.example.com', 'a.b.example.com', false],
    ['**.example.com', 'a.b.example.com', true],
    ['**.example.com', 'example.com', false],
    ['api.example.com', 'API.Example.COM.', true],
    ['api.example.com', 'api.example.co', false],
    ['*.bücher.example', 'www.xn--bcher-kva.example', true],
    ['*.example.com', 'evil-example.com', false],
  ];
  for (const [pattern, host, expected] of cases) {
    it(`${expected ? 'matches' : 'does not match'} ${host} with ${pattern}`, () => {
      assert.equal(hostMatches(compileHostGlob(pattern), host), expected);
    });
  }
});

describe('SPIFFE ID globs', () => {
  const cases: Array<[string, string, boolean]> = [
    ['spiffe://cluster.local/ns/bookinfo/sa/*', 'spiffe://cluster.local/ns/bookinfo/sa/productpage', true],
    ['spiffe://cluster.local/ns/*/sa/productpage', 'spiffe://cluster.local/ns/bookinfo/sa/productpage', true],
    ['spiffe://cluster.local/ns/bookinfo/**', 'spiffe://cluster.local/ns/bookinfo/sa/productpage', true],
    ['spiffe://cluster.local/ns/bookinfo/**', 'spiffe://cluster.local/ns/bookinfo', false],
    ['spiffe://cluster.local/ns/bookinfo/sa/*', 'spiffe://cluster.local/ns/bookinfo/sa/a/b', false],
    ['spiffe://cluster.local/ns/bookinfo/sa/*', 'spiffe://cluster.local/ns/bookinfo-evil/sa/a', false],
    ['spiffe://cluster.local/ns/bookinfo/sa/*', 'spiffe://other.local/ns/bookinfo/sa/a', false],
  ];
  for (const [pattern, id, expected] of cases) {
    it(`${expected ? 'matches' : 'does not match'} ${id} with ${pattern}`, () => {
      assert.equal(spiffeIdMatches(compileSpiffeGlob(pattern), id), expected);
    });
  }
});
