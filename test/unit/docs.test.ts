import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { ERROR_CODES } from '../../src/core/errors.ts';

const read = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8');

describe('documentation matches the code', () => {
  it('lists every error code in docs/refusals.md', () => {
    const doc = read('docs/refusals.md');
    const missing = Object.keys(ERROR_CODES).filter((code) => !doc.includes(`\`${code}\``));
    assert.deepEqual(missing, []);
  });

  it('documents every top-level configuration key in docs/configuration.md', async () => {
    const { configSchema } = await import('../../src/config/config-schema.ts');
    const doc = read('docs/configuration.md');
    const missing = Object.keys(configSchema.shape).filter(
      (key) => !doc.includes(`\`${key}\``) && !doc.includes(`\`${key}[]\``),
    );
    assert.deepEqual(missing, []);
  });

  it('shows the two quick-start commands in the README', () => {
    const readme = read('README.md');
    assert.match(readme, /npm ci && npm start/);
    assert.match(readme, /npm ci && npm test/);
  });
});
