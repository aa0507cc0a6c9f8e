#!/usr/bin/env bash
# `make vm-test`: the service on a real cgroup v2 kernel and under a real Docker engine, in a
# Debian bookworm VM emulated by QEMU (root; installs what it needs with apt). See the README
# ("Testing on a real cgroup v2 host and Docker") for what it proves and how long it takes.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
log() { echo "vm-test: $*" >&2; }
phase_started=$SECONDS
phase() { log "$1 took $((SECONDS - phase_started)) s"; phase_started=$SECONDS; }

scripts/vm/host-packages.sh
phase "host packages"

# ---- the VM, built once per version of its recipe ----
cache=${VM_CACHE:-/var/cache/python-executor-vm}
key=$(sha256sum < scripts/vm/build-image.sh | cut -c1-16)
vm=$cache/$key
if [ ! -f "$vm/disk.img" ]; then
  log "building the VM into $vm (once, about 3-5 minutes)"
  scripts/vm/build-image.sh "$vm"
  # Older recipes' VMs are of no further use.
  find "$cache" -mindepth 1 -maxdepth 1 -type d ! -name "$key" -exec rm -rf {} +
fi
phase "VM image"

# ---- what runs in the VM: the service as built here, the sandbox, the image ----
./scripts/prepare-sandbox.sh
cargo build --release --locked
phase "service build"
work=$(mktemp -d /var/tmp/vm-test.XXXXXX)
qemu=
cleanup() {
  if [ -n "$qemu" ]; then kill -KILL "$qemu" 2>/dev/null; wait "$qemu" 2>/dev/null; fi
  rm -rf "$work"
}
trap cleanup EXIT
# Interrupted (Ctrl-C, kill): still end QEMU, through the EXIT trap.
trap 'exit 130' INT TERM
# VM_CASES: all (default), native (no image, no Docker) or docker.
cases=${VM_CASES:-all}
image_id=none
if [ "$cases" != native ]; then
  image=localhost/python-executor:image-test
  IMAGE=$image IMAGE_BUILD_ONLY=1 ./scripts/image-test.sh
  image_id=$(buildah inspect --type image --format '{{.FromImageID}}' "$image" | cut -c1-16)
  buildah push --quiet "$image" "docker-archive:$work/image.tar:python-executor:vm-test-$image_id" >/dev/null
  log "image $image_id, archive $(du -h "$work/image.tar" | cut -f1)"
  phase "image build and export"
fi

# ---- one boot: scripts/vm/guest.sh runs every check and powers the VM off ----
# /dev/kvm here may be PVM, under which Debian's kernel hangs: software emulation (tcg) works
# anywhere, 10-50x slower. VM_ACCEL=kvm where real KVM is available.
log "booting the VM (QEMU, ${VM_ACCEL:-tcg}); the checks' output follows"
: > "$work/console.log"   # before tail follows it
timeout "${VM_TIMEOUT:-3600}" qemu-system-x86_64 -accel "${VM_ACCEL:-tcg}" -cpu max -machine q35 -m 3072 -smp 1 \
  -nographic -no-reboot -nic none \
  -kernel "$vm/vmlinuz" -initrd "$vm/initrd.img" \
  -drive "file=$vm/disk.img,if=virtio,format=raw,cache=unsafe" -snapshot \
  -virtfs "local,path=$repo,mount_tag=repo,security_model=none,readonly=on" \
  -virtfs "local,path=$work,mount_tag=work,security_model=none" \
  -append "console=ttyS0 root=/dev/vda rw init=/sbin/vm-init panic=-1 cgroup_no_v1=all quiet vm.repo=$repo vm.script=$repo/scripts/vm/guest.sh vm.image=python-executor:vm-test-$image_id vm.cases=$cases" \
  </dev/null >> "$work/console.log" 2>&1 &
qemu=$!
# The console as it comes (the guest's own lines; the kernel is quiet).
tail -n +1 -f "$work/console.log" --pid "$qemu" | grep --line-buffered -v '^\s*$' &
wait "$qemu"; qemu=
sleep 1
phase "VM run"
status=$(cat "$work/guest.status" 2>/dev/null || echo "none")
if [ "$status" != 0 ]; then
  log "FAILED (guest status: $status)"
  grep -h 'vm-test summary' "$work/guest.log" 2>/dev/null || log "vm-test summary: no summary (the VM did not finish)"
  exit 1
fi
grep -h 'vm-test summary' "$work/guest.log"
