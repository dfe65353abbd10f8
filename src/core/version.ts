import { readFileSync } from 'node:fs';

/**
 * The gateway's version, read from package.json so there is one place to change it. The path is
 * the same from src/core/ (tsx) and dist/core/ (compiled), and the image ships package.json.
 */
export const VERSION: string = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;
