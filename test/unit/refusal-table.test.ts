import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { ERROR_CODES, type ErrorCode } from '../../src/core/errors.ts';
import { httpRefusalFor, metricKindFor, metricName, REFUSALS } from '../../src/core/refusal-table.ts';

const HEADING = '## How each refusal code is answered and counted';

/** The rows docs/refusals.md must carry, rendered from the one table in src/core/refusal-table.ts. */
function expectedRows(): string[] {
  return Object.entries(REFUSALS).map(([code, refusal]) => {
    const http = refusal?.http ? `\`${refusal.http.status}\`` : 'none (TCP reset)';
    const proxyStatus = refusal?.http ? `\`${refusal.http.proxyStatus}\`` : '—';
    const metric = metricName(refusal?.metric);
    return `| \`${code}\` | ${http} | ${proxyStatus} | ${metric ? `\`${metric}\`` : '—'} |`;
  });
}

function documentedRows(): string[] {
  const doc = readFileSync(new URL('../../docs/refusals.md', import.meta.url), 'utf8');
  const start = doc.indexOf(HEADING);
  assert.ok(start >= 0, `docs/refusals.md has a "${HEADING}" section`);
  const section = doc.slice(start + HEADING.length).split(/\n## /)[0] as string;
  return section.split('\n').filter((line) => line.startsWith('| `EGW_'));
}

describe('refusal table', () => {
  it('is what docs/refusals.md documents, row for row', () => {
    const expected = expectedRows();
    assert.ok(expected.length >= 10);
    assert.deepEqual(documentedRows(), expected, `expected section:\n${expected.join('\n')}`);
  });

  it('names only known codes, and every code a proxy client can be refused with', () => {
    for (const code of Object.keys(REFUSALS)) assert.ok(code in ERROR_CODES, code);
    const answered = Object.keys(ERROR_CODES).filter(
      (code) => /^EGW_(POLICY|PROXY|UPSTREAM|LIMIT)_/.test(code) || code === 'EGW_DRAINING',
    );
    assert.deepEqual(
      answered.filter((code) => !(code in REFUSALS)),
      [],
    );
  });

  it('answers the codes clients see as before, and an unknown failure as a 500', () => {
    assert.deepEqual(httpRefusalFor('EGW_POLICY_DENIED'), { status: 403, proxyStatus: 'http_request_denied' });
    assert.deepEqual(httpRefusalFor('EGW_UPSTREAM_TIMEOUT'), { status: 504, proxyStatus: 'connection_timeout' });
    assert.deepEqual(httpRefusalFor('EGW_LIMIT_IDENTITY_RATE'), {
      status: 429,
      proxyStatus: 'connection_limit_reached',
    });
    assert.deepEqual(httpRefusalFor('EGW_CONFIG_INVALID' as ErrorCode), {
      status: 500,
      proxyStatus: 'proxy_internal_error',
    });
    assert.deepEqual(metricKindFor('EGW_UPSTREAM_DNS'), { counter: 'dial', kind: 'dns' });
    assert.equal(metricKindFor('EGW_IDENTITY_EXPIRED'), undefined);
  });
});
