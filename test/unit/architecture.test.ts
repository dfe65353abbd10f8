import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { sourceFiles } from '../helpers/source-files.ts';

const SRC = new URL('../../src', import.meta.url).pathname;

/** Data-path stages in pipeline order; a stage may import core, pki and earlier stages only. */
const STAGES = ['listener', 'tls', 'identity', 'policy', 'upstream', 'pipe', 'proxy'];
const LIBRARIES = ['core', 'pki'];

function topFolder(file: string): string {
  const rel = relative(SRC, file);
  return rel.includes('/') ? (rel.split('/')[0] as string) : rel;
}

function relativeImports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/^(?:import|export)[^'"]*from\s+['"](\.[^'"]+)['"]/gm)].map((m) =>
    resolve(dirname(file), m[1] as string),
  );
}

describe('architecture', () => {
  const files = sourceFiles(SRC);

  it('keeps the data path a one-way pipeline: listener → tls → identity → policy → upstream → pipe → proxy', () => {
    const violations: string[] = [];
    for (const file of files) {
      const stage = STAGES.indexOf(topFolder(file));
      if (stage === -1) continue;
      for (const target of relativeImports(file)) {
        const folder = topFolder(target);
        const allowed = LIBRARIES.includes(folder) || (STAGES.includes(folder) && STAGES.indexOf(folder) <= stage);
        if (!allowed) violations.push(`${relative(SRC, file)} imports ${relative(SRC, target)}`);
      }
    }
    assert.deepEqual(violations, []);
  });

  it('keeps core free of imports from other folders', () => {
    const violations = files
      .filter((f) => topFolder(f) === 'core')
      .flatMap((f) =>
        relativeImports(f)
          .filter((t) => topFolder(t) !== 'core')
          .map((t) => `${relative(SRC, f)} imports ${relative(SRC, t)}`),
      );
    assert.deepEqual(violations, []);
  });

  it('lets the audit stage subscribe to core events without importing the data path', () => {
    const violations = files
      .filter((f) => topFolder(f) === 'audit')
      .flatMap((f) =>
        relativeImports(f)
          .filter((t) => !['core', 'audit'].includes(topFolder(t)))
          .map((t) => `${relative(SRC, f)} imports ${relative(SRC, t)}`),
      );
    assert.deepEqual(violations, []);
  });

  it('imports main.ts only from process entry points: the CLI and cluster workers (one composition root)', () => {
    const importers = files
      .filter((f) => relativeImports(f).some((t) => t === join(SRC, 'main.ts')))
      .map((f) => relative(SRC, f));
    assert.ok(importers.length > 0);
    assert.deepEqual(
      importers.filter((f) => !f.startsWith('cli/') && f !== 'cluster/cluster-worker.ts'),
      [],
    );
  });
});
