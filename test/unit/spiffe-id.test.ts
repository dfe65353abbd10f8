import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isGatewayError } from '../../src/core/errors.ts';
import { parseSpiffeId } from '../../src/identity/spiffe-id.ts';

describe('parseSpiffeId', () => {
  it('parses an Istio workload ID into trust domain, namespace and service account', () => {
    const id = parseSpiffeId('spiffe://cluster.local/ns/bookinfo/sa/productpage');
    assert.equal(id.trustDomain, 'cluster.local');
    assert.equal(id.namespace, 'bookinfo');
    assert.equal(id.serviceAccount, 'productpage');
    assert.deepEqual(id.segments, ['ns', 'bookinfo', 'sa', 'productpage']);
    assert.ok(Object.isFrozen(id));
  });

  it('leaves namespace unset for paths that are not /ns/<ns>/sa/<sa>', () => {
    assert.equal(parseSpiffeId('spiffe://example.org/ns/bookinfo/sa/x/extra').namespace, undefined);
    assert.equal(parseSpiffeId('spiffe://example.org/workload/ns/bookinfo/sa/x').namespace, undefined);
  });

  it('accepts a case-insensitive scheme and keeps the path case', () => {
    assert.equal(parseSpiffeId('SPIFFE://td/Path').uri, 'spiffe://td/Path');
  });

  const invalid: Array<[string, string, RegExp]> = [
    ['an upper-case trust domain', 'spiffe://Cluster.local/ns/a/sa/b', /lowercase/],
    ['another scheme', 'https://cluster.local/ns/a/sa/b', /scheme/],
    ['an empty trust domain', 'spiffe:///ns/a', /empty/],
    ['a port', 'spiffe://cluster.local:8443/ns/a', /port/],
    ['userinfo', 'spiffe://user@cluster.local/ns/a', /userinfo/],
    ['a query', 'spiffe://cluster.local/ns/a?x=1', /query/],
    ['a fragment', 'spiffe://cluster.local/ns/a#x', /fragment/],
    ['percent-encoding', 'spiffe://cluster.local/ns/a%2Fb', /percent/],
    ['an empty segment', 'spiffe://cluster.local/ns//sa/b', /empty segments/],
    ['a trailing slash', 'spiffe://cluster.local/ns/a/', /trailing/],
    ['a dot segment', 'spiffe://cluster.local/ns/./sa', /dot segments/],
    ['a dot-dot segment', 'spiffe://cluster.local/ns/../sa', /dot segments/],
    ['a forbidden character', 'spiffe://cluster.local/ns/a b', /characters/],
    ['more than 2048 bytes', `spiffe://cluster.local/${'a'.repeat(2040)}`, /2048/],
  ];
  for (const [what, input, message] of invalid) {
    it(`rejects ${what}`, () => {
      assert.throws(
        () => parseSpiffeId(input),
        (error: unknown) =>
          isGatewayError(error, 'EGW_IDENTITY_SPIFFE_ID_INVALID') && message.test((error as Error).message),
      );
    });
  }
});
