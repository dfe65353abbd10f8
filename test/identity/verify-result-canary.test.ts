import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { describe, it } from 'node:test';
import { connect, createSecureContext, TLSSocket } from 'node:tls';
import { isGatewayError } from '../../src/core/errors.ts';
import { checkVerifyResultReadable } from '../../src/identity/verify-result-canary.ts';
import { createRootCa, issueLeaf } from '../../src/pki/issue-certificate.ts';
import { exportPrivateKeyPem } from '../../src/pki/key-pair.ts';

/** The native TLSWrap prototype behind every TLSSocket's `_handle`, from one real loopback pair. */
async function tlsWrapPrototype(): Promise<Record<string, unknown>> {
  const ca = await createRootCa({ commonName: 'prototype probe' });
  const leaf = await issueLeaf(ca, { dnsNames: ['localhost'] });
  const context = createSecureContext({ cert: leaf.certPem, key: await exportPrivateKeyPem(leaf.keys.privateKey) });
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const accepted = new Promise<Record<string, unknown>>((resolve) => {
      server.once('connection', (raw) => {
        const tls = new TLSSocket(raw, { isServer: true, secureContext: context });
        tls.on('error', () => {});
        const handle = (tls as unknown as { _handle: object })._handle;
        resolve(Object.getPrototypeOf(handle));
        tls.destroy();
      });
    });
    const client = connect({ port: (server.address() as { port: number }).port, rejectUnauthorized: false });
    client.on('error', () => {});
    const proto = await accepted;
    client.destroy();
    return proto;
  } finally {
    server.close();
  }
}

/**
 * Canary for Node's private verify-result handle (issue 10 item 6). It must fail loudly, never
 * quietly, if a Node upgrade makes `TLSSocket._handle.verifyError()` stop returning results.
 */
describe("canary: OpenSSL's verify result stays readable", () => {
  it('reads an error for a chain from an unknown CA and none for a trusted one, on this Node', async () => {
    await checkVerifyResultReadable();
  });

  it('fails with EGW_TLS_VERIFY_RESULT_UNAVAILABLE when the handle stops returning results', async () => {
    const proto = await tlsWrapPrototype();
    const original = proto.verifyError;
    assert.equal(typeof original, 'function', 'this Node has the private verifyError');
    try {
      // Simulates the upgrade this canary exists for: the call still works but reports nothing.
      proto.verifyError = () => null;
      await assert.rejects(
        checkVerifyResultReadable(),
        (error: unknown) =>
          isGatewayError(error, 'EGW_TLS_VERIFY_RESULT_UNAVAILABLE') &&
          /a chain from an unknown CA was reported as valid/.test((error as Error).message),
      );
    } finally {
      proto.verifyError = original;
    }
    // Restored, it passes again (the patch, not the machine, made it fail).
    await checkVerifyResultReadable();
  });
});
