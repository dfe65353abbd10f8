#!/usr/bin/env node
// Runs the compiled CLI in dist/ (`npm run build`): the image, `npm start` and an installed package
// run JavaScript, with no TypeScript loader. Only in a source checkout whose dist/ is missing or
// older than some file in src/ does it run src/ through tsx (a dev dependency) instead, so tests and
// a developer between two builds never run stale code. The check is a few hundred stat calls.
import { accessSync, constants, existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import module from 'node:module';
import { homedir } from 'node:os';
import { join } from 'node:path';

// V8's code cache on disk (Node >= 22.1): a warm start compiles none of the ~400 modules `serve`
// loads. $NODE_COMPILE_CACHE wins (the image ships a filled cache there); else a per-user
// ~/.cache/mesh-egress-gateway/compile-cache, which survives a reboot unlike $TMPDIR, else Node's
// $TMPDIR default. Best effort by design: a read-only or missing directory only costs time.
function compileCacheDir() {
  if (process.env.NODE_COMPILE_CACHE) return undefined;
  try {
    const base = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
    const dir = join(base, 'mesh-egress-gateway', 'compile-cache');
    mkdirSync(dir, { recursive: true });
    accessSync(dir, constants.W_OK);
    return dir;
  } catch {
    return undefined;
  }
}
try {
  module.enableCompileCache?.(compileCacheDir());
} catch {
  // An unusable cache is no reason not to start.
}
// Opening process.stdout makes a piped fd 1 non-blocking (libuv's uv_pipe_open). The stdout audit
// sink writes fd 1 with fs.write on the thread pool and relies on EAGAIN when a log collector
// stalls; on a blocking fd that write never returns, and exit() then waits for it for ever.
// (Running through tsx opened stdout as a side effect; the compiled CLI must do it itself.)
process.stdout;

const compiled = new URL('../dist/cli/index.js', import.meta.url);
const source = new URL('../src/', import.meta.url);

function newestMtime(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = new URL(entry.name + (entry.isDirectory() ? '/' : ''), dir);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(path) : statSync(path).mtimeMs);
  }
  return newest;
}

const haveCompiled = existsSync(compiled);
const stale = existsSync(source) && (!haveCompiled || newestMtime(source) > statSync(compiled).mtimeMs);
if (!stale) {
  await import(compiled.href);
} else {
  let register;
  try {
    ({ register } = await import('tsx/esm/api'));
  } catch {
    // No tsx (production install): an older build still beats not starting.
    if (!haveCompiled) {
      process.stderr.write('egress-gateway: dist/ is missing; run `npm run build` first\n');
      process.exit(2);
    }
  }
  if (register) {
    register();
    await import(new URL('cli/index.ts', source).href);
  } else {
    await import(compiled.href);
  }
}
