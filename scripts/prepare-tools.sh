#!/usr/bin/env bash
# Installs the test-only Python tools (sandbox/tools-requirements.txt) into .sandbox/tools,
# idempotently: a stamp of the requirements makes the second run a no-op.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.sandbox/tools
base_python=${SANDBOX_BASE_PYTHON:-/usr/bin/python3}
want=$(sha256sum sandbox/tools-requirements.txt | cut -d' ' -f1)
if [ "$(cat $dir.stamp 2>/dev/null)" != "$want" ] || [ ! -x $dir/bin/python3 ]; then
  echo "prepare-tools: installing test tools" >&2
  rm -rf $dir $dir.stamp
  mkdir -p .sandbox
  "$base_python" -m venv $dir
  export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
  if grep -qvE '^\s*(#|$)' sandbox/tools-requirements.txt; then
    $dir/bin/pip install --quiet -r sandbox/tools-requirements.txt
  fi
  echo "$want" > $dir.stamp
fi
