import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { sourceKey } from '../../src/listener/pre-handshake-gate.ts';

describe('pre-handshake per-source key', () => {
  it('counts IPv4 by address, also in its IPv4-mapped IPv6 spelling', () => {
    assert.equal(sourceKey('127.0.0.5'), '127.0.0.5');
    assert.equal(sourceKey('::ffff:127.0.0.5'), '127.0.0.5');
    assert.notEqual(sourceKey('127.0.0.5'), sourceKey('127.0.0.6'));
  });

  it('counts IPv6 by /64, whatever the spelling, so one host cannot rotate its interface ID', () => {
    assert.equal(sourceKey('2001:db8:1:2::1'), '2001:db8:1:2::/64');
    assert.equal(sourceKey('2001:DB8:1:2:aaaa:bbbb:cccc:dddd'), '2001:db8:1:2::/64');
    assert.equal(sourceKey('2001:db8::1'), '2001:db8:0:0::/64');
    assert.equal(sourceKey('::1'), '0:0:0:0::/64');
    assert.notEqual(sourceKey('2001:db8:1:2::1'), sourceKey('2001:db8:1:3::1'));
  });
});
