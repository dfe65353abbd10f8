import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startEchoServer } from '../../src/devtools/echo-server.ts';
import { startTestGateway, type TestGateway } from './test-gateway.ts';
import { createTestPki, type TestPki } from './test-pki.ts';

/** "A gateway with a PKI and a target": the set-up most suites share, torn down in one call. */
export interface GatewayFixture {
  readonly pki: TestPki;
  /** An HTTP echo server on 127.0.0.1, bound to :0. */
  readonly echo: Server;
  readonly echoPort: number;
  readonly gw: TestGateway;
  close(): Promise<void>;
}

/**
 * Mints a PKI, starts the echo target, then a gateway whose config is built from the target's port
 * (listeners bind :0). If any step fails, what was started is stopped before the error propagates.
 */
export async function startGatewayFixture(
  config: (target: { echoPort: number; pki: TestPki }) => Record<string, unknown>,
): Promise<GatewayFixture> {
  const pki = await createTestPki();
  let echo: Server | undefined;
  try {
    echo = await startEchoServer('127.0.0.1', 0);
    const echoPort = (echo.address() as AddressInfo).port;
    const gw = await startTestGateway(pki, config({ echoPort, pki }));
    const target = echo;
    return {
      pki,
      echo: target,
      echoPort,
      gw,
      async close() {
        await gw.close();
        target.close();
        pki.cleanup();
      },
    };
  } catch (error) {
    echo?.close();
    pki.cleanup();
    throw error;
  }
}
