import { type AuditRecord, subscribeAudit } from '../core/audit-event.ts';
import { formatEcs } from './formats/ecs-format.ts';
import { formatText } from './formats/text-format.ts';
import type { AuditSink, SinkStats } from './sinks/audit-sink.ts';

export type AuditFormat = 'ecs' | 'cef' | 'text';
export type RecordFormatter = (record: AuditRecord) => string;

export const FORMATTERS: Record<string, RecordFormatter> = {
  ecs: formatEcs,
  text: formatText,
};

interface Route {
  readonly sink: AuditSink;
  readonly format: RecordFormatter;
}

/**
 * Subscribes to the data path's audit channel and fans each record out to every sink in its
 * own format. Never throws into the publisher: a formatter or sink failure is counted as a drop.
 */
export class AuditHub {
  readonly #routes: Route[] = [];
  #unsubscribe: (() => void) | undefined;
  #formatErrors = 0;

  add(sink: AuditSink, format: RecordFormatter): void {
    this.#routes.push({ sink, format });
  }

  start(): void {
    this.#unsubscribe ??= subscribeAudit((record) => this.deliver(record));
  }

  deliver(record: AuditRecord): void {
    for (const route of this.#routes) {
      try {
        route.sink.write(route.format(record));
      } catch {
        this.#formatErrors += 1;
      }
    }
  }

  stats(): Record<string, Readonly<SinkStats>> & { formatErrors?: never } {
    return Object.fromEntries(this.#routes.map((r) => [r.sink.name, r.sink.stats()]));
  }

  get formatErrors(): number {
    return this.#formatErrors;
  }

  reopen(): void {
    for (const route of this.#routes) route.sink.reopen?.();
  }

  async close(timeoutMs: number): Promise<void> {
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    await Promise.all(this.#routes.map((r) => r.sink.flush(timeoutMs)));
    await Promise.all(this.#routes.map((r) => r.sink.close()));
  }
}
