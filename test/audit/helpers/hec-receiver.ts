import { readFileSync } from 'node:fs';
import type { IncomingHttpHeaders } from 'node:http';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { waitUntil } from '../../helpers/poll-until.ts';

export interface HecRequest {
  readonly at: number;
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
  /** The envelopes of the batch, parsed one by one (null when the body was not a JSON sequence). */
  readonly envelopes: Array<Record<string, unknown>> | null;
  readonly status: number;
}

export type HecAnswer = { status: number; body?: string } | 'hang';

/**
 * Splits a HEC batch: JSON objects concatenated with no separator (`{...}{...}`), as Splunk
 * reads it. Returns null if anything is not a complete JSON object.
 */
export function splitConcatenatedJson(text: string): Array<Record<string, unknown>> | null {
  const objects: Array<Record<string, unknown>> = [];
  let depth = 0;
  let inString = false;
  let start = -1;
  for (let i = 0; i < text.length; i += 1) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i += 1;
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') inString = true;
    else if (c === '{') {
      if (depth === 0) start = i;
      depth += 1;
    } else if (c === '}') {
      depth -= 1;
      if (depth === 0) {
        try {
          objects.push(JSON.parse(text.slice(start, i + 1)));
        } catch {
          return null;
        }
      }
    } else if (depth === 0 && !/\s/.test(c ?? '')) return null;
  }
  return depth === 0 && objects.length > 0 ? objects : null;
}

export interface HecReceiver {
  readonly port: number;
  readonly url: string;
  readonly requests: HecRequest[];
  /** Decides the answer to the n-th request (0-based); default: 200 Success. */
  answer: (index: number, request: Omit<HecRequest, 'status' | 'at'>) => HecAnswer;
  /** Every envelope accepted with 200, in arrival order. */
  accepted(): Array<Record<string, unknown>>;
  waitFor(predicate: (r: HecReceiver) => boolean, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

/**
 * A local HTTPS receiver that behaves like Splunk's HEC endpoint where the sink can tell:
 * checks `Authorization: Splunk <token>` (401 code 2 without, 403 code 4 with a wrong one), the
 * path, and that the body is a sequence of envelopes each with an `event` (400 code 6 / 12).
 * A test can override any answer (e.g. 503 code 9 "Server is busy", or never answering).
 */
export async function startHecReceiver(options: {
  cert: string;
  key: string;
  token: string | (() => string);
  port?: number;
}): Promise<HecReceiver> {
  const requests: HecRequest[] = [];
  const token = typeof options.token === 'string' ? () => options.token as string : options.token;
  const receiver: HecReceiver = {
    port: 0,
    url: '',
    requests,
    answer: () => ({ status: 200, body: '{"text":"Success","code":0}' }),
    accepted: () => requests.filter((r) => r.status === 200).flatMap((r) => r.envelopes ?? []),
    async waitFor(predicate, timeoutMs = 10_000) {
      await waitUntil(
        () => predicate(receiver),
        timeoutMs,
        () => `the HEC receiver's condition; ${requests.length} requests: ${requests.map((r) => r.status).join(',')}`,
        25,
      );
    },
    close: async () => {},
  };
  const server = createServer({ cert: readFileSync(options.cert), key: readFileSync(options.key) }, (req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => {
      body += chunk;
    });
    req.on('end', () => {
      const envelopes = splitConcatenatedJson(body);
      const seen = { path: req.url ?? '', headers: req.headers, body, envelopes };
      let answer: HecAnswer;
      const auth = req.headers.authorization;
      if (req.method !== 'POST' || req.url !== '/services/collector/event')
        answer = { status: 404, body: '{"text":"The requested URL was not found on this server.","code":404}' };
      else if (!auth) answer = { status: 401, body: '{"text":"Token is required","code":2}' };
      else if (auth !== `Splunk ${token()}`) answer = { status: 403, body: '{"text":"Invalid token","code":4}' };
      else if (!envelopes)
        answer = { status: 400, body: '{"text":"Invalid data format","code":6,"invalid-event-number":0}' };
      else if (envelopes.some((e) => e.event === undefined))
        answer = { status: 400, body: '{"text":"Event field is required","code":12}' };
      else answer = receiver.answer(requests.length, seen);
      if (answer === 'hang') {
        requests.push({ ...seen, at: Date.now(), status: 0 });
        return; // never answer: the client's timeout must fire
      }
      requests.push({ ...seen, at: Date.now(), status: answer.status });
      res.writeHead(answer.status, { 'content-type': 'application/json' });
      res.end(answer.body ?? '{"text":"Success","code":0}');
    });
  });
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  Object.assign(receiver, {
    port,
    url: `https://127.0.0.1:${port}/services/collector/event`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  });
  return receiver;
}
