#!/usr/bin/env bash
# `make test`: builds every test binary once, then runs them several at a time (TEST_JOBS,
# default 4), each with two test threads: most tests wait (on time limits, on shutdowns), so
# on two cores this takes a fraction of cargo's one-binary-at-a-time run. POOL_SUITES (names
# of test binaries) run a second time, in the same queue, under SANDBOX_STRATEGY=pool. Every
# binary's output is printed whole once it ends; the exit status is non-zero if any test
# failed. TEST_ONLY (names of test binaries) runs only those.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${TEST_PROFILE:-test-release}
jobs=${TEST_JOBS:-4}
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
started=$SECONDS

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
echo "built the test binaries in $((SECONDS - started)) s"

if [ -n "${TEST_ONLY:-}" ]; then
  grep -E "^($(echo $TEST_ONLY | tr ' ' '|')) " "$logs/binaries" > "$logs/only" || true
  mv "$logs/only" "$logs/binaries"
fi

# One queue: "name strategy executable", the longest first (under either strategy) so that
# none starts last; those that mostly wait (hostile_secrets sleeps) early, beside CPU work.
slow="api zygote pool contract hostile_secrets hostile_exhaustion hostile_time hostile_http hostile_burst lifecycle"
pooled=" ${POOL_SUITES:-} "
{
  for name in $slow; do
    sed -n "s/^$name /$name default /p" "$logs/binaries"
    case "$pooled" in *" $name "*) sed -n "s/^$name /$name pool /p" "$logs/binaries" ;; esac
  done
  for name in ${POOL_SUITES:-}; do
    case " $slow " in *" $name "*) ;; *) sed -n "s/^$name /$name pool /p" "$logs/binaries" ;; esac
  done
  grep -v -E "^($(echo $slow | tr ' ' '|')) " "$logs/binaries" | sed 's/ / default /' || true
} > "$logs/queue"

run_one() {
  local name=$1 strategy=$2 exe=$3 logs=$4
  local status=0 started=$SECONDS log="$logs/$name.$strategy"
  if [ "$strategy" = default ]; then
    "$exe" --test-threads=2 > "$log.log" 2>&1 || status=$?
  else
    SANDBOX_STRATEGY=$strategy "$exe" --test-threads=2 > "$log.log" 2>&1 || status=$?
  fi
  echo "$status" > "$log.status"
  echo "==> $name, strategy $strategy (exit $status, $((SECONDS - started)) s)"
  cat "$log.log"
}
export -f run_one
tests_started=$SECONDS
xargs -r -P "$jobs" -L 1 bash -c 'run_one "$0" "$1" "$2" "'"$logs"'"' < "$logs/queue"

failed=$(grep -L '^0$' "$logs"/*.status | xargs -r -n1 basename | sed 's/\.status$//' | tr '\n' ' ')
if [ -n "$failed" ]; then
  echo "FAILED test binaries: $failed" >&2
  exit 1
fi
echo "all $(wc -l < "$logs/queue") test runs passed in $((SECONDS - tests_started)) s"
