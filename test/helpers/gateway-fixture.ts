import type { AddressInfo } from 'node:net';
import { startEchoServer } from '../../src/devtools/echo-server.ts';
import { startTcpEchoServer } from './tcp-echo-server.ts';
import { startTestGateway, type TestGateway, type TestGatewayOptions } from './test-gateway.ts';
import { createTestPki, type TestPki } from './test-pki.ts';

/** An echo target the fixture started, bound to :0 on `host`. */
export interface EchoTarget {
  readonly host: string;
  readonly port: number;
}

export interface FixtureOptions {
  /** A PKI to use; the caller keeps it and cleans it up. Default: a new one, removed by close(). */
  readonly pki?: TestPki;
  /** Key type of the new PKI (not with `pki`). */
  readonly keyType?: 'ecdsa-p256' | 'rsa-2048';
  /** Hosts of the HTTP echo servers (src/devtools/echo-server.ts), in order. Default: one on 127.0.0.1. */
  readonly httpEchoes?: readonly string[];
  /** How many TCP echo servers (every byte back) to start on 127.0.0.1. Default: none. */
  readonly tcpEchoes?: number;
}

export interface GatewayOptions extends Omit<TestGatewayOptions, 'anchors'> {
  /** The trust anchor file (default: the PKI's intermediate); a function is given the PKI. */
  readonly anchors?: string | ((pki: TestPki) => string);
}

/** A PKI and echo targets, and the gateways started on them, torn down in one call. */
export interface FixtureTargets {
  readonly pki: TestPki;
  readonly httpEchoes: readonly EchoTarget[];
  readonly tcpEchoes: readonly EchoTarget[];
  /** The first HTTP echo server's port (throws when none was asked for). */
  readonly echoPort: number;
  /** The first TCP echo server's port (throws when none was asked for). */
  readonly tcpEchoPort: number;
  /** Starts a gateway on this PKI (listeners bind :0); close() closes it too. */
  startGateway(config: Record<string, unknown>, options?: GatewayOptions): Promise<TestGateway>;
  /** Closes the gateways, then the targets, then removes a PKI the fixture minted. */
  close(): Promise<void>;
}

/** "A gateway with a PKI and a target": the set-up most suites share. */
export interface GatewayFixture extends FixtureTargets {
  readonly gw: TestGateway;
}

type Stop = () => void | Promise<void>;

class Targets implements FixtureTargets {
  readonly #stops: Stop[];
  readonly httpEchoes: EchoTarget[] = [];
  readonly tcpEchoes: EchoTarget[] = [];

  constructor(
    readonly pki: TestPki,
    stops: Stop[],
  ) {
    this.#stops = stops;
  }

  get echoPort(): number {
    return firstPort(this.httpEchoes, 'an HTTP echo server (httpEchoes)');
  }

  get tcpEchoPort(): number {
    return firstPort(this.tcpEchoes, 'a TCP echo server (tcpEchoes)');
  }

  async startGateway(config: Record<string, unknown>, options: GatewayOptions = {}): Promise<TestGateway> {
    const { anchors, ...rest } = options;
    const file = typeof anchors === 'function' ? anchors(this.pki) : anchors;
    const started = await startTestGateway(this.pki, config, { ...rest, anchors: file });
    // Once only: a test may close its gateway early, and close() comes by later.
    let closing: Promise<void> | undefined;
    const gw: TestGateway = { ...started, close: () => (closing ??= started.close()) };
    this.#stops.push(() => gw.close());
    return gw;
  }

  /** Last started, first stopped: gateways before their targets, the PKI last. */
  async close(): Promise<void> {
    for (const stop of this.#stops.splice(0).reverse()) await stop();
  }
}

function firstPort(targets: readonly EchoTarget[], what: string): number {
  const first = targets[0];
  if (!first) throw new Error(`the fixture was started without ${what}`);
  return first.port;
}

/**
 * Mints a PKI (or takes `options.pki`) and starts the echo targets, each bound to :0. If a step
 * fails, what was started is stopped before the error propagates.
 */
export async function startFixtureTargets(options: FixtureOptions = {}): Promise<FixtureTargets> {
  const stops: Stop[] = [];
  const pki = options.pki ?? (await createTestPki({ keyType: options.keyType }));
  if (!options.pki) stops.push(() => pki.cleanup());
  const targets = new Targets(pki, stops);
  try {
    for (const host of options.httpEchoes ?? ['127.0.0.1']) {
      const server = await startEchoServer(host, 0);
      stops.push(() => {
        server.close();
      });
      targets.httpEchoes.push({ host, port: (server.address() as AddressInfo).port });
    }
    for (let i = 0; i < (options.tcpEchoes ?? 0); i++) {
      const echo = await startTcpEchoServer();
      stops.push(() => echo.close());
      targets.tcpEchoes.push({ host: '127.0.0.1', port: echo.port });
    }
  } catch (error) {
    await targets.close();
    throw error;
  }
  return targets;
}

/**
 * The targets of `startFixtureTargets`, then a gateway whose config is built from them (the
 * targets' ports, the PKI; it may issue certificates first). close() tears all of it down.
 */
export async function startGatewayFixture(
  config: (targets: FixtureTargets) => Record<string, unknown> | Promise<Record<string, unknown>>,
  options: FixtureOptions & GatewayOptions = {},
): Promise<GatewayFixture> {
  const { pki, keyType, httpEchoes, tcpEchoes, ...gatewayOptions } = options;
  const targets = await startFixtureTargets({ pki, keyType, httpEchoes, tcpEchoes });
  try {
    const gw = await targets.startGateway(await config(targets), gatewayOptions);
    // Assigned onto the instance (not spread) so the port getters stay lazy.
    return Object.assign(targets, { gw });
  } catch (error) {
    await targets.close();
    throw error;
  }
}
