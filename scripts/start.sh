#!/bin/sh
# `npm start`: builds dist/ when it is missing or older than src/ (a fresh clone has none), then
# serves the shipped configuration with the compiled CLI.
set -eu
cd "$(dirname "$0")/.."
if [ ! -f dist/cli/index.js ] || [ -n "$(find src -newer dist/cli/index.js -print -quit)" ]; then
  echo "building dist/ (npm run build)" >&2
  npm run build --silent
fi
exec node bin/egress-gateway.js serve --config config/gateway.yaml "$@"
