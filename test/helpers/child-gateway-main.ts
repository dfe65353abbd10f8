/**
 * Child-process entry for test/helpers/child-gateway.ts: a real gateway in its own process, so
 * its sockets, file descriptors and memory can be counted from outside. Audit records go to a
 * JSON-lines file (action, code, connection id, reason), the bound ports to stdout as one line.
 */
import { appendFileSync } from 'node:fs';
import { subscribeAudit } from '../../src/core/audit-event.ts';
import { startGateway } from '../../src/main.ts';

const [configPath, auditPath] = process.argv.slice(2);
if (!configPath || !auditPath) throw new Error('usage: child-gateway-main.ts <config> <audit.jsonl>');
subscribeAudit((r) => {
  const line = { action: r.action, code: r.code, connectionId: r.connectionId, listener: r.listener, reason: r.reason };
  appendFileSync(auditPath, `${JSON.stringify(line)}\n`);
});
const gateway = await startGateway({
  configPath,
  log: (m) => process.stderr.write(`${m}\n`),
  adminListen: '127.0.0.1:0',
});
const ports = Object.fromEntries([...gateway.addresses].map(([name, a]) => [name, a.port]));
process.stdout.write(`${JSON.stringify({ ports, admin: gateway.adminAddress?.port })}\n`);
process.once('SIGTERM', () => {
  void gateway.close(500).then(() => process.exit(0));
});
