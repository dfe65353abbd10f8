#!/bin/sh
# `npm test`: builds dist/ so the CLI the tests spawn is the compiled one users run, then runs every
# test file (TypeScript, through tsx) on the current Node. Arguments replace the file list.
set -eu
cd "$(dirname "$0")/.."
echo "node $(node --version)" >&2
npm run build --silent
# Three files at a time on these 2-core machines: most files wait on sockets, child processes and
# timeouts, not CPU (the suite took ~200 s at 2, ~140 s at 3). EGW_TEST_CONCURRENCY overrides.
run() { node --import tsx --test --test-timeout=180000 --test-concurrency="${EGW_TEST_CONCURRENCY:-3}" "$@"; }
if [ "$#" -gt 0 ]; then run "$@"; exit; fi
run $(find test -name '*.test.ts' | sort)
