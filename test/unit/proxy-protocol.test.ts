import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseConfig } from '../../src/config/load-config.ts';
import { isGatewayError } from '../../src/core/errors.ts';
import {
  encodeProxyV2,
  MAX_PROXY_V2_TLV_BYTES,
  PP2_TYPE_EGW_SPIFFE_ID,
  PROXY_V2_SIGNATURE,
  parseProxyV2,
} from '../../src/listener/proxy-protocol.ts';

const SPIFFE = 'spiffe://cluster.local/ns/bookinfo/sa/productpage';

function ok(data: Buffer) {
  const parsed = parseProxyV2(data);
  assert.equal(parsed.status, 'ok', JSON.stringify(parsed));
  return parsed as Extract<typeof parsed, { status: 'ok' }>;
}

/** A header with a hand-set command/family byte pair and body, to reach what the encoder never writes. */
function raw(versionCommand: number, family: number, body: Buffer, length = body.length): Buffer {
  const fixed = Buffer.from([versionCommand, family, 0, 0]);
  fixed.writeUInt16BE(length, 2);
  return Buffer.concat([PROXY_V2_SIGNATURE, fixed, body]);
}

describe('PROXY protocol v2 parser and writer', () => {
  it('round-trips IPv4 addresses, ports and TLVs, and reports the header length', () => {
    const header = encodeProxyV2({
      source: { ip: '127.0.0.7', port: 40_000 },
      destination: { ip: '127.0.0.1', port: 8443 },
      tlvs: [{ type: PP2_TYPE_EGW_SPIFFE_ID, value: Buffer.from(SPIFFE) }],
    });
    assert.equal(header[13], 0x11); // AF_INET, STREAM
    const trailing = Buffer.from('\x16\x03\x01 client hello');
    const parsed = ok(Buffer.concat([header, trailing]));
    assert.equal(parsed.length, header.length);
    assert.deepEqual(parsed.header.source, { ip: '127.0.0.7', port: 40_000 });
    assert.deepEqual(parsed.header.destination, { ip: '127.0.0.1', port: 8443 });
    assert.equal(parsed.header.command, 'proxy');
    assert.equal(parsed.header.tlvs.length, 1);
    assert.equal(parsed.header.tlvs[0]?.type, PP2_TYPE_EGW_SPIFFE_ID);
    assert.equal(parsed.header.tlvs[0]?.value.toString(), SPIFFE);
  });

  it('writes IPv6 for a mixed pair and IPv4 for IPv4-mapped addresses, and reads both back canonical', () => {
    const v6 = ok(
      encodeProxyV2({ source: { ip: '2001:DB8:0:0::1', port: 1 }, destination: { ip: '127.0.0.1', port: 2 } }),
    );
    assert.deepEqual(v6.header.source, { ip: '2001:db8::1', port: 1 });
    assert.deepEqual(v6.header.destination, { ip: '::ffff:7f00:1', port: 2 });
    const mapped = encodeProxyV2({
      source: { ip: '::ffff:10.1.2.3', port: 5 },
      destination: { ip: '10.0.0.1', port: 6 },
    });
    assert.equal(mapped[13], 0x11);
    assert.deepEqual(ok(mapped).header.source, { ip: '10.1.2.3', port: 5 });
  });

  it('accepts LOCAL (a balancer health check) without addresses, and PROXY with AF_UNSPEC', () => {
    const local = ok(raw(0x20, 0x00, Buffer.alloc(0)));
    assert.equal(local.header.command, 'local');
    assert.equal(local.header.source, undefined);
    const unspec = ok(raw(0x21, 0x00, Buffer.alloc(0)));
    assert.equal(unspec.header.command, 'proxy');
    assert.equal(unspec.header.source, undefined);
  });

  it('says incomplete for every truncation of a valid header, and never needs more than the header', () => {
    const header = encodeProxyV2({
      source: { ip: '10.0.0.1', port: 1 },
      destination: { ip: '10.0.0.2', port: 2 },
      tlvs: [{ type: 0xe0, value: Buffer.from(SPIFFE) }],
    });
    assert.equal(ok(header).length, header.length); // positive control
    for (let n = 0; n < header.length; n++) {
      const parsed = parseProxyV2(header.subarray(0, n));
      assert.equal(parsed.status, 'incomplete', `at ${n} bytes`);
      assert.ok(parsed.status === 'incomplete' && parsed.need <= header.length);
    }
  });

  it('refuses a bad signature at the first wrong byte (a TLS ClientHello, a v1 header)', () => {
    assert.equal(parseProxyV2(Buffer.from([0x16, 0x03, 0x01])).status, 'invalid');
    assert.equal(parseProxyV2(Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n')).status, 'invalid');
    const flipped = encodeProxyV2({ source: { ip: '1.2.3.4', port: 1 }, destination: { ip: '5.6.7.8', port: 2 } });
    assert.equal(ok(flipped).header.command, 'proxy'); // positive control
    flipped[5] = 0x00;
    assert.equal(parseProxyV2(flipped.subarray(0, 6)).status, 'invalid');
  });

  it('refuses a wrong version, an unknown command or family, a datagram transport, a short address block', () => {
    const body = Buffer.alloc(12);
    assert.equal(parseProxyV2(raw(0x21, 0x11, body)).status, 'ok'); // positive control
    for (const [vc, fam, len] of [
      [0x11, 0x11, 12],
      [0x22, 0x11, 12],
      [0x21, 0x41, 12],
      [0x21, 0x12, 12],
      [0x21, 0x11, 8],
    ] as const) {
      const parsed = parseProxyV2(raw(vc, fam, body.subarray(0, len)));
      assert.equal(parsed.status, 'invalid', `ver/cmd ${vc} fam ${fam} len ${len}`);
    }
  });

  it('refuses oversize TLVs from the fixed part alone, before the rest arrives', () => {
    const atLimit = raw(0x21, 0x11, Buffer.alloc(12 + MAX_PROXY_V2_TLV_BYTES));
    assert.equal(parseProxyV2(atLimit.subarray(0, 16)).status, 'incomplete'); // at the limit: waits for it
    const over = raw(0x21, 0x11, Buffer.alloc(0), 12 + MAX_PROXY_V2_TLV_BYTES + 1);
    const parsed = parseProxyV2(over);
    assert.equal(parsed.status, 'invalid');
    assert.match(parsed.status === 'invalid' ? parsed.reason : '', /TLV limit/);
    assert.equal(parseProxyV2(raw(0x21, 0x11, Buffer.alloc(0), 0xffff)).status, 'invalid');
  });

  it('refuses a TLV that runs past the end of the header', () => {
    const good = Buffer.concat([Buffer.alloc(12), Buffer.from([0xe0, 0x00, 0x02, 0x41, 0x42])]);
    assert.equal(ok(raw(0x21, 0x11, good)).header.tlvs[0]?.value.toString(), 'AB'); // positive control
    const bad = Buffer.concat([Buffer.alloc(12), Buffer.from([0xe0, 0x00, 0x09, 0x41, 0x42])]);
    assert.equal(parseProxyV2(raw(0x21, 0x11, bad)).status, 'invalid');
    const cut = Buffer.concat([Buffer.alloc(12), Buffer.from([0xe0, 0x00])]);
    assert.equal(parseProxyV2(raw(0x21, 0x11, cut)).status, 'invalid');
  });
});

describe('PROXY protocol configuration keys', () => {
  const config = (listener: string) => `
identity: { trustDomain: cluster.local, trustAnchors: a.pem, cert: c.pem, key: k.pem }
listeners:
  - { name: lb, listen: "127.0.0.1:8443", ${listener} }
`;
  const problem = (listener: string): string => {
    try {
      parseConfig(config(listener), 'cfg.yaml');
    } catch (error) {
      assert.ok(isGatewayError(error, 'EGW_CONFIG_INVALID'), String(error));
      return (error as Error).message;
    }
    return assert.fail('expected the configuration to be rejected');
  };

  it('accepts proxyProtocol with its balancers, and upstreamProxyProtocol in tcp mode', () => {
    const parsed = parseConfig(
      config(
        'mode: tcp, upstream: "127.0.0.1:9", proxyProtocol: v2, proxyProtocolFrom: ["10.0.0.0/8", "::1"], upstreamProxyProtocol: v2',
      ),
      'cfg.yaml',
    );
    assert.equal(parsed.listeners[0]?.proxyProtocol, 'v2');
    assert.deepEqual(parsed.listeners[0]?.proxyProtocolFrom, ['10.0.0.0/8', '::1']);
    assert.equal(parsed.listeners[0]?.upstreamProxyProtocol, 'v2');
    assert.equal(parseConfig(config('mode: connect'), 'cfg.yaml').listeners[0]?.proxyProtocol, undefined);
  });

  it('names the key of each mistake', () => {
    assert.match(
      problem('mode: connect, proxyProtocol: v2'),
      /listeners\[0\]\.proxyProtocolFrom: required with proxyProtocol/,
    );
    assert.match(
      problem('mode: connect, proxyProtocolFrom: ["10.0.0.0/8"]'),
      /listeners\[0\]\.proxyProtocolFrom: only valid/,
    );
    assert.match(
      problem('mode: connect, upstreamProxyProtocol: v2'),
      /listeners\[0\]\.upstreamProxyProtocol: only valid when mode is tcp/,
    );
    assert.match(
      problem('mode: connect, proxyProtocol: v1, proxyProtocolFrom: ["10.0.0.0/8"]'),
      /listeners\[0\]\.proxyProtocol/,
    );
    assert.match(
      problem('mode: connect, proxyProtocol: v2, proxyProtocolFrom: ["10.0.0.0/33"]'),
      /listeners\[0\]\.proxyProtocolFrom\[0\]: expected a CIDR range/,
    );
  });
});
