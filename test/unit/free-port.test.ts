import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { describe, it } from 'node:test';
import { freePort } from '../helpers/loopback-ports.ts';

// The ports handed to daemons' config files (haproxy, nginx, tinyproxy, …). A repeat once made
// haproxy bind two frontends to one port and split a test's connections between them.
describe('freePort (test helper)', () => {
  it('hands out distinct, bindable ports below the ephemeral range, where :0 never lands', async () => {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    const ports: number[] = [];
    for (let i = 0; i < 200; i++) ports.push(await freePort());
    assert.equal(new Set(ports).size, ports.length);
    assert.ok(
      ports.every((p) => p >= 20_000 && p < low),
      `${ports.filter((p) => p < 20_000 || p >= low)}`,
    );
    // A handed-out port binds (positive control); a kernel-chosen one is in the range freePort avoids.
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(ports[0], '127.0.0.1', resolve));
    const kernelChosen = createServer();
    await new Promise<void>((resolve) => kernelChosen.listen(0, '127.0.0.1', resolve));
    const chosen = (kernelChosen.address() as AddressInfo).port;
    await Promise.all([server, kernelChosen].map((s) => new Promise((r) => s.close(r))));
    assert.ok(chosen >= low, `the kernel chose ${chosen}`);
  });
});
