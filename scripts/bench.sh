#!/usr/bin/env bash
# `make bench`: zygote, pool and cold side by side in one run (see scripts/bench.py).
# Expects the release binary and the prepared sandbox (`make bench` does both first).
# Prints a Markdown report and writes it to target/bench/latest.md; arguments go to bench.py.
set -euo pipefail
cd "$(dirname "$0")/.."
exec /usr/bin/python3 scripts/bench.py "$@"
