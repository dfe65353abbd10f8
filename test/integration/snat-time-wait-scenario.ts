/**
 * Runs INSIDE a network namespace of its own (snat-time-wait.test.ts starts it under `unshare -n`
 * with 192.0.2.1 and 192.0.2.10 on the namespace's loopback and the ephemeral range narrowed to
 * 16 ports): an echo server on 192.0.2.1, a connect-mode gateway with SNAT 192.0.2.10. It makes
 * three times as many tunnels as the range has ports, one after another, so the gateway (which
 * closes the upstream first when curl is done) leaves every port of the address in TIME_WAIT,
 * and prints one JSON line of facts for the test to assert on.
 */
import { spawnSync } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import { connect } from 'node:net';
import { startEchoServer } from '../../src/devtools/echo-server.ts';
import { curlViaGateway } from '../helpers/curl.ts';
import { startTestGateway } from '../helpers/test-gateway.ts';
import { createTestPki } from '../helpers/test-pki.ts';

const SNAT = '192.0.2.10';
/** curl's own source ports must not come from the narrowed range either. */
const CURL = ['-p', '--local-port', '50000-50999'];
const RANGE = { low: 40000, high: 40015 };

/** A dial the way Node makes it without a chosen port: bind(SNAT, 0), then connect. */
function kernelPortDial(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ host: '192.0.2.1', port, localAddress: SNAT });
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
  });
}

function timeWaitPorts(): number[] {
  const run = spawnSync('ss', ['-Htan', 'state', 'time-wait', 'src', SNAT], { encoding: 'utf8' });
  return [...run.stdout.matchAll(/192\.0\.2\.10:(\d+)/g)].map((m) => Number(m[1])).sort((a, b) => a - b);
}

async function main(): Promise<void> {
  const pki = await createTestPki();
  // Fixed ports outside the narrowed range: a listener on port 0 would take one of its 16 ports.
  const echo = await startEchoServer('192.0.2.1', 8080);
  const echoPort = (echo.address() as AddressInfo).port;
  const url = `http://192.0.2.1:${echoPort}/`;
  const client = await pki.workload('bookinfo', 'productpage');
  const gw = await startTestGateway(pki, {
    listeners: [{ name: 'egress', listen: '127.0.0.1:3128', mode: 'connect', snat: SNAT }],
    rules: [{ name: 'echo', to: { cidrs: ['192.0.2.1/32'] }, action: 'allow' }],
  });
  try {
    const kernelDialBefore = await kernelPortDial(echoPort);
    const tunnels = (RANGE.high - RANGE.low + 1) * 3;
    const peers: string[] = [];
    const failures: string[] = [];
    for (let i = 0; i < tunnels; i += 1) {
      // -p: a CONNECT tunnel per request (absolute-form would reuse one pooled upstream connection).
      const result = await curlViaGateway(gw.port('egress'), client, pki.rootPath, url, CURL);
      if (result.code === 0) peers.push((JSON.parse(result.stdout) as { peer: string }).peer);
      else failures.push(result.stderr.trim());
    }
    // The last tunnels' sockets may still be closing (FIN_WAIT): give them a moment to get there.
    let timeWait = timeWaitPorts();
    for (let wait = 0; wait < 30 && new Set(timeWait).size < RANGE.high - RANGE.low + 1; wait += 1) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      timeWait = timeWaitPorts();
    }
    const kernelDialAfter = await kernelPortDial(echoPort);
    // Absolute-form goes through undici's pool: its first upstream connection is a fresh dial too.
    const absolute = await curlViaGateway(gw.port('egress'), client, pki.rootPath, url, ['-f', ...CURL.slice(1)]);
    const absolutePeer = absolute.code === 0 ? (JSON.parse(absolute.stdout) as { peer: string }).peer : absolute.stderr;
    const reload = await gw.gateway.reload();
    const afterReload = await curlViaGateway(gw.port('egress'), client, pki.rootPath, url, CURL);
    const refusals = gw.records.filter((r) => r.action === 'egress-rejected').length;
    const facts = {
      kernelDialBefore,
      tunnels,
      peers,
      failures,
      timeWait,
      kernelDialAfter,
      absolutePeer,
      reload,
      afterReload: afterReload.code,
      refusals,
    };
    process.stdout.write(`${JSON.stringify(facts)}\n`);
  } finally {
    await gw.close();
    echo.close();
    pki.cleanup();
  }
}

await main();
