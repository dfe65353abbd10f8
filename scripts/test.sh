#!/bin/sh
# `npm test`: builds dist/ so the CLI the tests spawn is the compiled one users run, then runs every
# test file (TypeScript, through tsx) on the current Node. Arguments replace the file list.
set -eu
cd "$(dirname "$0")/.."
echo "node $(node --version)" >&2
npm run build --silent
if [ "$#" -eq 0 ]; then set -- $(find test -name '*.test.ts' | sort); fi
exec node --import tsx --test --test-concurrency=2 --test-timeout=180000 "$@"
