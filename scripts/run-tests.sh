#!/usr/bin/env bash
# `make test`: builds the test binaries once, then runs the suites several at a time
# (TEST_JOBS, default 4), each in a process of its own with two test threads: most tests wait
# (on time limits, on shutdowns), so on two cores this takes a fraction of cargo's one-at-a-time
# run. The integration suites are modules of one binary (tests/suites.rs), each run with its
# module as the filter (`suites contract::`); the crate's unit tests are the other runs.
# POOL_SUITES (suite names) run a second time, in the same queue, under SANDBOX_STRATEGY=pool.
# Every run's output is printed whole once it ends; the exit status is non-zero if any test
# failed. TEST_ONLY (suite names) runs only those.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${TEST_PROFILE:-test-release}
jobs=${TEST_JOBS:-4}
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
started=$SECONDS

# "name executable [filter]": a line per suite of tests/suites.rs (its module as the filter),
# one per unit-test binary (no filter, and no trailing blank: xargs -L would join the lines).
cargo test --profile "$profile" --locked --no-run --message-format=json-render-diagnostics \
  | python3 -c '
import json, subprocess, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") != "compiler-artifact" or not m.get("executable") or not m["profile"]["test"]:
        continue
    kind, exe = m["target"]["kind"][0], m["executable"]
    if kind != "test":
        print(m["target"]["name"] + "-" + kind, exe)
        continue
    listed = subprocess.run([exe, "--list", "--format", "terse"], capture_output=True, text=True, check=True)
    suites = sorted({t.split("::")[0] for t in listed.stdout.splitlines() if t.endswith(": test")})
    for suite in suites:
        print(suite, exe, suite + "::")
' > "$logs/binaries"
echo "built the test binaries in $((SECONDS - started)) s"

if [ -n "${TEST_ONLY:-}" ]; then
  grep -E "^($(echo $TEST_ONLY | tr ' ' '|')) " "$logs/binaries" > "$logs/only" || true
  mv "$logs/only" "$logs/binaries"
fi

# One queue: "name strategy executable [filter]", the longest first (under either strategy) so that
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
  local name=$1 strategy=$2 exe=$3 filter=$4 logs=$5
  local status=0 started=$SECONDS log="$logs/$name.$strategy"
  if [ "$strategy" = default ]; then
    "$exe" --test-threads=2 $filter > "$log.log" 2>&1 || status=$?
  else
    SANDBOX_STRATEGY=$strategy "$exe" --test-threads=2 $filter > "$log.log" 2>&1 || status=$?
  fi
  echo "$status" > "$log.status"
  echo "==> $name, strategy $strategy (exit $status, $((SECONDS - started)) s)"
  cat "$log.log"
}
export -f run_one
tests_started=$SECONDS
xargs -r -P "$jobs" -L 1 bash -c 'run_one "$0" "$1" "$2" "${3:-}" "'"$logs"'"' < "$logs/queue"

failed=$(grep -L '^0$' "$logs"/*.status | xargs -r -n1 basename | sed 's/\.status$//' | tr '\n' ' ')
if [ -n "$failed" ]; then
  echo "FAILED test runs: $failed" >&2
  exit 1
fi
echo "all $(wc -l < "$logs/queue") test runs passed in $((SECONDS - tests_started)) s"
