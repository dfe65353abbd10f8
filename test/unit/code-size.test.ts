import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';
import { describe, it } from 'node:test';
import ts from 'typescript';
import { sourceFiles } from '../helpers/source-files.ts';

const MAX_FILE_LINES = 300;
const MAX_FUNCTION_LINES = 60;
const srcDir = new URL('../../src/', import.meta.url).pathname;

/** Every function-like node (declarations, methods, arrows, accessors) longer than the limit. */
function longFunctions(fileName: string, text: string): string[] {
  const source = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, true);
  const found: string[] = [];
  const visit = (node: ts.Node) => {
    if (ts.isFunctionLike(node) && 'body' in node && node.body) {
      const start = source.getLineAndCharacterOfPosition(node.getStart(source)).line;
      const end = source.getLineAndCharacterOfPosition(node.getEnd()).line;
      const lines = end - start + 1;
      const name = (node as { name?: ts.Node }).name?.getText(source) ?? '(anonymous)';
      if (lines > MAX_FUNCTION_LINES) found.push(`${fileName}:${start + 1} ${name} is ${lines} lines`);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

// Issue 13 item 3, kept true: split by responsibility, not by cutting.
describe('code size in src/', () => {
  it(`has no function over ${MAX_FUNCTION_LINES} lines and no file over ${MAX_FILE_LINES} lines`, () => {
    // Positive control: the checker does flag a long function.
    const long = `function big() {\n${'  call();\n'.repeat(MAX_FUNCTION_LINES)}}\n`;
    assert.equal(longFunctions('control.ts', long).length, 1);
    assert.deepEqual(longFunctions('control.ts', 'const f = () => 1;\n'), []);

    const files = sourceFiles(srcDir);
    assert.ok(files.length > 50, `found the sources (${files.length} files)`);
    const problems = files.flatMap((path) => {
      const text = readFileSync(path, 'utf8');
      const name = relative(srcDir, path);
      const lines = text.split('\n').length - (text.endsWith('\n') ? 1 : 0);
      return [...(lines > MAX_FILE_LINES ? [`${name} has ${lines} lines`] : []), ...longFunctions(name, text)];
    });
    assert.deepEqual(problems, []);
  });
});
