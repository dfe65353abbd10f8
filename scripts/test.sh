#!/bin/sh
# `npm test`: builds dist/ so the CLI the tests spawn is the compiled one users run, then runs every
# test file (TypeScript, through tsx) on the current Node. Arguments replace the file list.
set -eu
cd "$(dirname "$0")/.."
echo "node $(node --version)" >&2
npm run build --silent
run() { node --import tsx --test --test-timeout=180000 "$@"; }
if [ "$#" -gt 0 ]; then run --test-concurrency="${EGW_TEST_CONCURRENCY:-3}" "$@"; exit; fi
# Three files at a time on these 2-core machines: most files wait on sockets, child processes and
# timeouts, not CPU (the suite took ~200 s at 2, ~140 s at 3). EGW_TEST_CONCURRENCY overrides.
# The rsyslog sink suites run afterwards on their own: at three files at a time their plain-TCP
# delivery test timed out twice in fresh-clone CI (never alone, nor under a CPU burner); the cause
# is not found yet, so they are kept apart rather than retried.
alone='test/audit/syslog-sink.test.ts test/audit/syslog-outage.test.ts'
status=0
run --test-concurrency="${EGW_TEST_CONCURRENCY:-3}" $(find test -name '*.test.ts' | sort | grep -v -e syslog-sink.test.ts -e syslog-outage.test.ts) || status=1
run --test-concurrency=1 $alone || status=1
exit $status
