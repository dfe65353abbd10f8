import { isAbsolute, resolve } from 'node:path';
import type { AuditConfig } from './audit-config-schema.ts';
import { AuditHub, FORMATTERS } from './audit-hub.ts';
import { StreamSink, openAppendFile } from './sinks/stream-sink.ts';

/** Builds the hub and one sink per `audit.sinks[]` entry. Relative paths resolve against the working directory. */
export function buildAuditHub(config: AuditConfig): AuditHub {
  const hub = new AuditHub();
  config.sinks.forEach((sink, index) => {
    const format = FORMATTERS[sink.format];
    if (!format) throw new Error(`audit.sinks[${index}].format: ${sink.format} is not available`);
    if (sink.type === 'stdout') hub.add(new StreamSink(`stdout#${index}`, () => process.stdout), format);
    else {
      const path = isAbsolute(sink.path) ? sink.path : resolve(process.cwd(), sink.path);
      hub.add(new StreamSink(`file#${index}:${sink.path}`, openAppendFile(path), { reopenable: true }), format);
    }
  });
  return hub;
}
