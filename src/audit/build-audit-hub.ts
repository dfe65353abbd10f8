import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import type { AuditRecord } from '../core/audit-event.ts';
import { GatewayError } from '../core/errors.ts';
import { type AuditConfig, type AuditSinkConfig, SINK_DEFAULTS, sinkName } from './audit-config-schema.ts';
import { AuditHub } from './audit-hub.ts';
import { FORMATTERS } from './formats/record-formatters.ts';
import {
  FACILITIES,
  formatSyslogMessage,
  frameLineFeed,
  frameOctetCounted,
  type SyslogHeader,
} from './formats/syslog-message.ts';
import { AppendSink } from './sinks/append-sink.ts';
import type { AuditSink, SinkLog } from './sinks/audit-sink.ts';
import { HecSink, hecEnvelope } from './sinks/hec-sink.ts';
import { SyslogStreamSink } from './sinks/syslog-stream-sink.ts';
import { SyslogUdpSink } from './sinks/syslog-udp-sink.ts';
import { readTlsMaterial, resolvePath } from './sinks/tls-files.ts';

export interface BuildAuditHubOptions {
  /** Operational log for sink state changes and drop reports (default: stderr). */
  readonly log?: SinkLog;
}

const stderrLog: SinkLog = (message) => process.stderr.write(`${message}\n`);

/** `host:port` or `[v6]:port` → parts. The schema has checked the shape. */
function splitAddress(address: string): { host: string; port: number } {
  const at = address.lastIndexOf(':');
  return { host: address.slice(0, at).replace(/^\[(.*)\]$/, '$1'), port: Number(address.slice(at + 1)) };
}

type SyslogSinkConfig = Extract<AuditSinkConfig, { type: 'syslog' }>;
type HttpSinkConfig = Extract<AuditSinkConfig, { type: 'http' }>;
type Formatter = (typeof FORMATTERS)[keyof typeof FORMATTERS];

function syslogHeader(sink: SyslogSinkConfig): SyslogHeader {
  const d = SINK_DEFAULTS.syslog;
  const facility = sink.facility ?? d.facility;
  return {
    facility: typeof facility === 'number' ? facility : FACILITIES[facility],
    hostname: sink.hostname ?? hostname(),
    appName: sink.appName ?? d.appName,
    procId: String(process.pid),
    sdId: sink.sdId ?? d.sdId,
    bom: sink.bom ?? d.bom,
  };
}

function buildSyslogSink(sink: SyslogSinkConfig, name: string, format: Formatter, log: SinkLog): AuditSink {
  const d = SINK_DEFAULTS.syslog;
  const queueSize = sink.queueSize ?? SINK_DEFAULTS.queueSize;
  const { host, port } = splitAddress(sink.address);
  const header = syslogHeader(sink);
  const message = (record: AuditRecord) => formatSyslogMessage(record, format(record), header);
  const backoff = {
    minBackoffMs: sink.minBackoff ?? d.minBackoffMs,
    maxBackoffMs: sink.maxBackoff ?? d.maxBackoffMs,
  };
  if (sink.transport === 'udp') {
    return new SyslogUdpSink(name, (record) => Buffer.from(message(record), 'utf8'), {
      host,
      port,
      queueSize,
      log,
      ...backoff,
    });
  }
  const frame = (sink.framing ?? d.framing) === 'lf' ? frameLineFeed : frameOctetCounted;
  const paths = { ca: sink.ca, cert: sink.cert, key: sink.key };
  if (sink.transport === 'tls') readTlsMaterial(name, paths); // fail start-up on a missing file, not at the first record
  return new SyslogStreamSink(name, (record) => frame(message(record)), {
    host,
    port,
    transport: sink.transport,
    ...(sink.transport === 'tls' ? { tlsMaterial: () => readTlsMaterial(name, paths) } : {}),
    serverName: sink.serverName,
    confirmIntervalMs: sink.confirmInterval ?? d.confirmIntervalMs,
    timeoutMs: sink.timeout ?? d.timeoutMs,
    queueSize,
    log,
    ...backoff,
  });
}

/**
 * The HEC token, read now (an unreadable tokenFile fails start-up); on a refresh (the receiver
 * refused the token) it is read again, and a failed re-read keeps the last good token.
 */
function hecToken(sink: HttpSinkConfig, name: string, log: SinkLog): (refresh: boolean) => string {
  const readToken = (): string => {
    if (sink.token !== undefined) return sink.token;
    try {
      return readFileSync(resolvePath(sink.tokenFile as string), 'utf8').trim();
    } catch (cause) {
      throw new GatewayError(
        'EGW_AUDIT_SINK_INVALID',
        `audit sink ${name}: tokenFile ${sink.tokenFile}: ${(cause as Error).message}`,
        { cause },
      );
    }
  };
  let token = readToken();
  return (refresh) => {
    if (refresh) {
      try {
        token = readToken();
      } catch (error) {
        log((error as Error).message);
      }
    }
    return token;
  };
}

function buildHttpSink(sink: HttpSinkConfig, name: string, format: Formatter, log: SinkLog): AuditSink {
  const d = SINK_DEFAULTS.http;
  const token = hecToken(sink, name, log);
  const meta = {
    host: sink.host,
    source: sink.source ?? d.source,
    sourcetype: sink.sourcetype ?? (sink.format === 'ecs' ? '_json' : undefined),
    index: sink.index,
  };
  return new HecSink(
    name,
    (record) => Buffer.from(hecEnvelope(record, format(record), sink.format === 'ecs', meta), 'utf8'),
    {
      url: sink.url,
      token,
      ...(sink.url.startsWith('https:')
        ? { tls: readTlsMaterial(name, { ca: sink.ca, cert: sink.cert, key: sink.key }) }
        : {}),
      batchSize: sink.batchSize ?? d.batchSize,
      maxBatchBytes: sink.maxBatchBytes ?? d.maxBatchBytes,
      flushIntervalMs: sink.flushInterval ?? d.flushIntervalMs,
      timeoutMs: sink.timeout ?? d.timeoutMs,
      maxRetries: sink.maxRetries,
      minBackoffMs: sink.minBackoff ?? d.minBackoffMs,
      maxBackoffMs: sink.maxBackoff ?? d.maxBackoffMs,
      queueSize: sink.queueSize ?? SINK_DEFAULTS.queueSize,
      log,
    },
  );
}

function buildSink(sink: AuditSinkConfig, name: string, log: SinkLog): AuditSink {
  const format = FORMATTERS[sink.format];
  const queueSize = sink.queueSize ?? SINK_DEFAULTS.queueSize;
  switch (sink.type) {
    case 'stdout':
      return new AppendSink(name, { kind: 'stdout' }, format, { queueSize, log });
    case 'file':
      return new AppendSink(name, { kind: 'file', path: resolvePath(sink.path) }, format, { queueSize, log });
    case 'syslog':
      return buildSyslogSink(sink, name, format, log);
    case 'http':
      return buildHttpSink(sink, name, format, log);
  }
}

/**
 * Builds the hub and one sink per `audit.sinks[]` entry. Relative paths resolve against the
 * working directory. Unreadable TLS or token files are configuration errors (start-up fails);
 * an unreachable receiver is not: its sink queues and reconnects in the background.
 */
export function buildAuditHub(config: AuditConfig, options: BuildAuditHubOptions = {}): AuditHub {
  const log = options.log ?? stderrLog;
  const hub = new AuditHub({ log, dropLogIntervalMs: config.dropLogInterval ?? SINK_DEFAULTS.dropLogIntervalMs });
  config.sinks.forEach((sink, index) => {
    hub.add(buildSink(sink, sinkName(sink, index), log));
  });
  return hub;
}
