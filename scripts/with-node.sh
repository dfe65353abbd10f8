#!/bin/sh
# Runs a command under Node >= 22 (package.json "engines"): the system's Node when it is new
# enough, otherwise Node 24 fetched once from the npm registry by node-bin.sh. `npm start` and
# `npm test` go through here, so a machine with an older Node (e.g. Debian's 20) needs nothing more.
# EGW_NODE_MAJOR=22 picks a line explicitly (CI runs the suite on 24, the image's line, and on 22).
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
oldest=22
system_major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
wanted="${EGW_NODE_MAJOR:-}"
if [ -z "$wanted" ]; then
  if [ "$system_major" -ge "$oldest" ]; then exec "$@"; fi
  wanted=24
  echo "Node $(node --version 2>/dev/null || echo '(none)') is older than $oldest; using Node $wanted from the npm registry" >&2
elif [ "$system_major" = "$wanted" ]; then
  exec "$@"
fi
node_path="$(sh "$here/node-bin.sh" "$wanted")"
PATH="$(dirname "$node_path"):$PATH"
export PATH
exec "$@"
