#!/bin/sh
# Measures what issue 11 bounds: `egress-gateway --version` and the time from starting `serve` on
# the shipped config/gateway.yaml (ports moved to free ones) until /readyz answers 200.
#   sh scripts/startup-time.sh [runs]      (uses `node` from PATH; run through scripts/with-node.sh)
set -eu
cd "$(dirname "$0")/.."
runs="${1:-5}"
[ -f dist/cli/index.js ] || npm run build --silent
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
free_port() { node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"; }
admin="$(free_port)"
sed -e "s/127.0.0.1:3128/127.0.0.1:$(free_port)/; s/127.0.0.1:3129/127.0.0.1:$(free_port)/" \
  -e "s/127.0.0.1:9901/127.0.0.1:$admin/; s|certs/dev|$work/certs|g" config/gateway.yaml >"$work/gateway.yaml"
now() { date +%s%N; }
ms() { echo $((($2 - $1) / 1000000)); }
echo "node $(node --version)"
node bin/egress-gateway.js serve --config "$work/gateway.yaml" >/dev/null 2>&1 &
pid=$!
i=0
until curl -fs "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1; do
  i=$((i + 1)); [ "$i" -lt 300 ] || { echo "first start (mints the dev PKI) never got ready" >&2; exit 1; }; sleep 0.1
done
kill -TERM "$pid"; wait "$pid" || true
for run in $(seq 1 "$runs"); do
  t0="$(now)"; node bin/egress-gateway.js --version >/dev/null; t1="$(now)"
  node bin/egress-gateway.js serve --config "$work/gateway.yaml" >/dev/null 2>&1 &
  pid=$!
  i=0
  until curl -fs "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1; do
    i=$((i + 1)); [ "$i" -lt 3000 ] || { kill "$pid"; echo "serve never got ready" >&2; exit 1; }; sleep 0.01
  done
  t2="$(now)"
  # user+sys CPU of serve until ready (fields 14, 15 of /proc/PID/stat, in clock ticks): less load-sensitive.
  cpu="$(awk -v hz="$(getconf CLK_TCK)" '{ print int(($14 + $15) * 1000 / hz) }' "/proc/$pid/stat" 2>/dev/null || echo '?')"
  echo "run $run: --version $(ms "$t0" "$t1") ms, serve ready $(ms "$t1" "$t2") ms, cpu $cpu ms"
  kill -TERM "$pid"; wait "$pid" || true
done
