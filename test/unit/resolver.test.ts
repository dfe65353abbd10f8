import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { parseConfig } from '../../src/config/load-config.ts';
import { GatewayError, isGatewayError } from '../../src/core/errors.ts';
import { snatPool } from '../../src/core/snat-pool.ts';
import { parseSpiffeId } from '../../src/identity/spiffe-id.ts';
import { compilePolicy } from '../../src/policy/compile-policy.ts';
import { decideDestination } from '../../src/proxy/decide-destination.ts';
import type { GatewayState } from '../../src/proxy/gateway-state.ts';
import { perTryTimeoutMs } from '../../src/upstream/dns-query.ts';
import { createHostsTable, parseHostsFile } from '../../src/upstream/hosts-file.ts';
import { createLookupSlots } from '../../src/upstream/lookup-slots.ts';
import { createHostResolver, type LookupContext } from '../../src/upstream/resolve-host.ts';

const base = `
identity: { trustDomain: cluster.local, trustAnchors: a.pem, cert: c.pem, key: k.pem }
listeners:
  - { name: egress, listen: "127.0.0.1:3128", mode: connect }
`;

describe('lookup slots (per identity and in total)', () => {
  it('refuses one more lookup than the cap at once, per key, and frees a slot exactly once', () => {
    const slots = createLookupSlots(2, 3);
    const a1 = slots.acquire('a');
    const a2 = slots.acquire('a');
    assert.equal(typeof a1, 'function');
    assert.equal(typeof a2, 'function');
    assert.equal(slots.acquire('a'), 'per-key', "a's third lookup is refused");
    const b1 = slots.acquire('b');
    assert.equal(typeof b1, 'function', 'another identity still gets a slot');
    assert.equal(slots.acquire('c'), 'global', 'the gateway-wide cap');
    (a1 as () => void)();
    (a1 as () => void)();
    assert.equal(slots.inFlight('a'), 1, 'a second release of the same slot does nothing');
    assert.equal(slots.inFlight(), 2);
    assert.equal(typeof slots.acquire('c'), 'function');
  });

  it('has no cap at 0', () => {
    const slots = createLookupSlots(0, 0);
    for (let i = 0; i < 100; i += 1) assert.equal(typeof slots.acquire('a'), 'function');
    assert.equal(slots.inFlight('a'), 100);
  });
});

describe('hosts file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'egw-hosts-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('parses hosts(5): first line for a name wins, comments and junk ignored', () => {
    const table = parseHostsFile(
      '# c\n127.0.0.1 localhost Loop.\n::1 localhost\nnot-an-ip x\n10.0.0.1 pinned # note\n',
    );
    assert.deepEqual(table.get('localhost'), ['127.0.0.1', '::1']);
    assert.deepEqual(table.get('loop'), ['127.0.0.1']);
    assert.deepEqual(table.get('pinned'), ['10.0.0.1']);
    assert.equal(table.get('x'), undefined);
  });

  it('answers by family and rereads the file when it changes', async () => {
    const path = join(dir, 'hosts');
    writeFileSync(path, '10.0.0.1 pinned.test\n::1 six.test\n');
    const table = createHostsTable(path, 0);
    assert.equal(await table.lookup('pinned.test'), '10.0.0.1');
    assert.equal(await table.lookup('pinned.test', 6), undefined);
    assert.equal(await table.lookup('six.test', 6), '::1');
    writeFileSync(path, '10.0.0.2 pinned.test other.test\n');
    assert.equal(await table.lookup('pinned.test'), '10.0.0.2');
    assert.equal(await table.lookup('six.test'), undefined, 'a removed line is gone');
    assert.equal(await createHostsTable(join(dir, 'missing'), 0).lookup('localhost'), '127.0.0.1');
  });

  it('keeps localhost and /etc/hosts names resolving though c-ares does not read the file', async () => {
    const path = join(dir, 'hosts2');
    writeFileSync(path, '127.0.0.7 pinned.internal\n');
    const resolver = createHostResolver({}, { hostsFile: path });
    assert.equal(await resolver.resolve('pinned.internal'), '127.0.0.7');
    assert.equal(await createHostResolver().resolve('localhost'), '127.0.0.1');
  });
});

describe('resolver configuration', () => {
  it('fits every try in the overall deadline (c-ares doubles the per-try timeout)', () => {
    assert.equal(perTryTimeoutMs(1_500, 2), 500);
    assert.equal(perTryTimeoutMs(5_000, 1), 5_000);
    assert.equal(perTryTimeoutMs(7_000, 3), 1_000);
  });

  it('fills the resolver defaults and takes servers as c-ares does', () => {
    const config = parseConfig(base, 'cfg.yaml');
    assert.deepEqual(
      { ...config.resolver },
      {
        hosts: {},
        timeout: 5_000,
        tries: 2,
        servers: [],
        maxConcurrentPerIdentity: 4,
        maxConcurrent: 64,
        cacheEntries: 1_024,
      },
    );
    const custom = parseConfig(
      `${base}resolver: { servers: ["127.0.0.53:53", "10.0.0.10", "[::1]:5353"] }\n`,
      'c.yaml',
    );
    assert.deepEqual(custom.resolver.servers, ['127.0.0.53:53', '10.0.0.10', '[::1]:5353']);
  });

  it('refuses a server that is not an address, naming the key and file', () => {
    try {
      parseConfig(`${base}resolver: { servers: ["dns.google:53"] }\n`, 'cfg.yaml');
      assert.fail('expected a refusal');
    } catch (error) {
      assert.ok(isGatewayError(error, 'EGW_CONFIG_INVALID'), String(error));
      assert.match((error as Error).message, /cfg\.yaml/);
      assert.match((error as Error).message, /cfg\.yaml: resolver\.servers\[0\]: expected a DNS server address/);
    }
  });

  it('answers a lookup beyond the identity cap with EGW_UPSTREAM_DNS_BUSY, at once', async () => {
    // A UDP socket that reads queries and never answers: the admitted lookup waits for its deadline.
    const sink = createSocket('udp4');
    await new Promise<void>((resolve) => sink.bind(0, '127.0.0.1', () => resolve()));
    after(() => sink.close());
    const server = `127.0.0.1:${sink.address().port}`;
    const resolver = createHostResolver({}, { servers: [server], timeoutMs: 300, maxConcurrentPerIdentity: 1 });
    const first = resolver.resolve('slow.invalid', { key: 'spiffe://td/a' }).catch((error: unknown) => error);
    const other = resolver.resolve('localhost', { key: 'spiffe://td/b' });
    assert.equal(await other, '127.0.0.1', 'positive control: another lookup is answered meanwhile');
    await assert.rejects(resolver.resolve('second.invalid', { key: 'spiffe://td/a' }), (error) =>
      isGatewayError(error, 'EGW_UPSTREAM_DNS_BUSY'),
    );
    const settled = await first;
    assert.ok(isGatewayError(settled, 'EGW_UPSTREAM_DNS_TIMEOUT'), String(settled));
    const again = resolver.resolve('third.invalid', { key: 'spiffe://td/a' }).catch((error: unknown) => error);
    assert.ok(!isGatewayError(await again, 'EGW_UPSTREAM_DNS_BUSY'), 'the slot was freed when the lookup ended');
  });
});

describe('decideDestination and the resolver', () => {
  const id = parseSpiffeId('spiffe://cluster.local/ns/bookinfo/sa/default');
  const policy = compilePolicy(
    [
      {
        name: 'v6',
        from: { namespaces: ['bookinfo'] },
        to: { hosts: ['v6.example.com'] },
        action: 'allow',
        snat: '::1',
      },
      { name: 'any', from: { namespaces: ['bookinfo'] }, to: { hosts: ['*.example.com'] }, action: 'allow' },
    ],
    'cluster.local',
    ['egress'],
  );
  const listener = {
    name: 'egress',
    host: '127.0.0.1',
    port: 0,
    mode: 'connect',
    snat: snatPool('127.0.0.2'),
    maxConnections: 0,
  } as const;

  it('keys lookups by SPIFFE ID, asks for the SNAT family, and keeps the busy code', async () => {
    const asked: Array<[string, LookupContext | undefined]> = [];
    const real = createHostResolver({ 'api.example.com': '203.0.113.10' });
    const resolver = {
      resolve(host: string, context?: LookupContext) {
        asked.push([host, context]);
        if (host === 'busy.example.com') return Promise.reject(new GatewayError('EGW_UPSTREAM_DNS_BUSY', 'full'));
        return real.resolve(host, context);
      },
    };
    const state = { policy, resolver } as unknown as GatewayState;
    const ok = await decideDestination(state, listener, id, { host: 'api.example.com', port: 443 });
    assert.equal(ok.allow && ok.ip, '203.0.113.10', 'positive control');
    await decideDestination(state, listener, id, { host: 'v6.example.com', port: 443 }).catch(() => undefined);
    const busy = await decideDestination(state, listener, id, { host: 'busy.example.com', port: 443 });
    assert.equal(!busy.allow && busy.code, 'EGW_UPSTREAM_DNS_BUSY');
    assert.deepEqual(asked, [
      ['api.example.com', { key: id.uri, family: 4 }],
      ['v6.example.com', { key: id.uri, family: 6 }],
      ['busy.example.com', { key: id.uri, family: 4 }],
    ]);
  });
});
