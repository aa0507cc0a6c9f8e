#!/usr/bin/env bash
# `make test`: builds every test binary once, then runs them several at a time (TEST_JOBS,
# default 3), each with two test threads. Most tests wait (on time limits, on shutdowns), so
# on two cores this takes a fraction of cargo's one-binary-at-a-time run. The suites that
# load the CPU on purpose under tight time limits (ALONE) run afterwards, one at a time, as
# cargo would run them. Every binary's output is printed whole once it ends; the exit status
# is non-zero if any test failed. TEST_ONLY (names of test binaries) runs only those.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${TEST_PROFILE:-test-release}
jobs=${TEST_JOBS:-3}
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

cargo test --profile "$profile" --locked --no-run --message-format=json-render-diagnostics \
  | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        kind = m["target"]["kind"][0]
        name = m["target"]["name"] if kind == "test" else m["target"]["name"] + "-" + kind
        print(name, m["executable"])
' > "$logs/binaries"

# TEST_ONLY="a b": only these test binaries (make test runs some again under another strategy).
if [ -n "${TEST_ONLY:-}" ]; then
  grep -E "^($(echo $TEST_ONLY | tr ' ' '|')) " "$logs/binaries" > "$logs/only" || true
  mv "$logs/only" "$logs/binaries"
fi

# The slowest first, so that they do not start last.
slow="api contract pool hostile_time lifecycle hostile_runner"
alone="hostile_burst hostile_exhaustion"
{
  for name in $slow; do grep "^$name " "$logs/binaries" || true; done
  grep -v -E "^($(echo $slow $alone | tr ' ' '|')) " "$logs/binaries" || true
} > "$logs/order"
for name in $alone; do grep "^$name " "$logs/binaries" || true; done > "$logs/alone"

run_one() {
  local name=$1 exe=$2 logs=$3
  local status=0
  "$exe" --test-threads=2 > "$logs/$name.log" 2>&1 || status=$?
  echo "$status" > "$logs/$name.status"
  echo "==> $name (exit $status)"
  cat "$logs/$name.log"
}
export -f run_one
xargs -r -P "$jobs" -L 1 bash -c 'run_one "$0" "$1" "'"$logs"'"' < "$logs/order"
xargs -r -P 1 -L 1 bash -c 'run_one "$0" "$1" "'"$logs"'"' < "$logs/alone"

failed=$(grep -L '^0$' "$logs"/*.status | xargs -r -n1 basename | sed 's/\.status$//' | tr '\n' ' ')
if [ -n "$failed" ]; then
  echo "FAILED test binaries: $failed" >&2
  exit 1
fi
echo "all $(cat "$logs/order" "$logs/alone" | wc -l) test binaries passed"
