#!/usr/bin/env bash
# Checks a running python-executor from outside, the way a client sees it:
#   scripts/verify-deployment.sh BASE_URL [--require LIST] [--token TOKEN] [--api-token TOKEN]
# /health must report at least the isolation in LIST (comma-separated: user_namespace, cgroup,
# seccomp; default all three; "" for none), and live probes through /execute must show it:
# the script's uid is not 0, the only network interface is lo, the root is read-only, the
# memory limit ends a script that goes over it, and results come back in the contract's shape.
# --token: sent as "Authorization: Bearer" (e.g. an identity token for a private Cloud Run
# service). --api-token: the service's own API_TOKEN; the identity token then goes in
# X-Serverless-Authorization, as Cloud Run expects. Exits 1 and says why when anything is weaker
# than required, 2 on bad usage. Needs only python3 (standard library).
exec python3 "$(dirname "$0")/verify_deployment.py" "$@"
