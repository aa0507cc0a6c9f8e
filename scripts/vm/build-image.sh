#!/usr/bin/env bash
# Builds the VM for `make vm-test` into DIR (vmlinuz, initrd.img, disk.img): Debian bookworm with
# its stock kernel (cgroup v2, user namespaces), Docker 20.10 (docker.io) and Python 3.11, the same
# Debian as the host, so the service and the sandbox built here run there unchanged.
# The disk is used with -snapshot: every boot starts from this state.
set -euo pipefail
dir=$1
tmp=$(mktemp -d /var/tmp/vm-image.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
log() { echo "vm-test: $*" >&2; }

log "assembling the VM's root file system (Debian bookworm, mmdebstrap)"
# iptables-legacy: Docker 20.10 programs iptables and the nft backend needs modules the kernel
# loads on demand only with a full init; the legacy one works with what is loaded below.
mmdebstrap --quiet --variant=apt \
  --include=mount,kmod,linux-image-amd64,docker.io,iptables,iproute2,curl,python3,procps,busybox-static,e2fsprogs \
  --customize-hook='chroot "$1" update-alternatives --set iptables /usr/sbin/iptables-legacy' \
  --customize-hook='chroot "$1" update-alternatives --set ip6tables /usr/sbin/ip6tables-legacy' \
  --customize-hook='mkdir -p "$1/etc/docker" && echo "{\"storage-driver\": \"overlay2\"}" > "$1/etc/docker/daemon.json"' \
  --customize-hook='cat > "$1/sbin/vm-init" <<STUB
#!/bin/sh
# Mounts the shared repository (vm.repo= on the kernel command line) and runs its
# scripts/vm/init.sh: the VM on disk stays the same while the checks change.
mount -t proc proc /proc
modprobe 9pnet_virtio; modprobe 9p
for arg in \$(cat /proc/cmdline); do case \$arg in vm.repo=*) repo=\${arg#vm.repo=} ;; esac; done
mkdir -p "\$repo"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,ro repo "\$repo" && exec /bin/bash "\$repo/scripts/vm/init.sh"
echo "vm-init: cannot mount the repository"; busybox poweroff -f
STUB
chmod 0755 "$1/sbin/vm-init"' \
  --customize-hook='echo python-executor-vm > "$1/etc/hostname"; rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/cache/apt/archives/*.deb' \
  bookworm "$tmp/root"

kernel=$(ls "$tmp/root/boot" | sed -n 's/^vmlinuz-//p' | head -1)
log "kernel $kernel"
cp "$tmp/root/boot/vmlinuz-$kernel" "$tmp/vmlinuz"

# A tiny initrd: busybox, the modules to reach an ext4 root on virtio, and an /init that mounts
# it and hands over to the init= given on the kernel's command line.
modules=$tmp/root/lib/modules/$kernel
mkdir -p "$tmp/initrd/bin" "$tmp/initrd/modules" "$tmp/initrd/dev" "$tmp/initrd/proc" "$tmp/initrd/newroot"
cp "$tmp/root/bin/busybox" "$tmp/initrd/bin/busybox"
order=()
add_module() { # a module after the modules it depends on (modules.dep)
  local name=$1 path deps
  path=$(grep -E "(^|/)$name\.ko(\.[a-z]+)?:" "$modules/modules.dep" | head -1 | cut -d: -f1)
  [ -n "$path" ] || return 0   # built in
  for done in "${order[@]}"; do [ "$done" = "$path" ] && return 0; done
  deps=$(grep -E "^$path:" "$modules/modules.dep" | cut -d: -f2)
  for dep in $deps; do add_module "$(basename "$dep" | sed -E 's/\.ko(\.[a-z]+)?$//')"; done
  order+=("$path")
}
# ext4 needs crc32c at mount time, a soft dependency modules.dep does not list.
for m in virtio_pci virtio_blk crc32c_generic ext4; do add_module "$m"; done
: > "$tmp/initrd/modules/order"
for path in "${order[@]}"; do
  name=$(basename "$path" | sed -E 's/\.ko(\.[a-z]+)?$//')
  case $path in
    *.ko.xz) xz -dc "$modules/$path" > "$tmp/initrd/modules/$name.ko" ;;
    *.ko.zst) zstd -qdc "$modules/$path" > "$tmp/initrd/modules/$name.ko" ;;
    *) cp "$modules/$path" "$tmp/initrd/modules/$name.ko" ;;
  esac
  echo "$name" >> "$tmp/initrd/modules/order"
done
cat > "$tmp/initrd/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t devtmpfs dev /dev
for m in $(cat /modules/order); do insmod /modules/$m.ko 2>/dev/null; done
for _ in $(seq 50); do [ -b /dev/vda ] && break; sleep 0.1; done
mount -t ext4 -o rw /dev/vda /newroot || { echo "initrd: cannot mount /dev/vda"; busybox poweroff -f; }
init=/sbin/vm-init
for arg in $(cat /proc/cmdline); do case $arg in init=*) init=${arg#init=} ;; esac; done
umount /proc; umount /dev
exec switch_root /newroot "$init"
INIT
chmod +x "$tmp/initrd/init"
(cd "$tmp/initrd" && find . | cpio --quiet -o -H newc | gzip -1) > "$tmp/initrd.img"

log "making the disk image"
rm -rf "$tmp/root/boot"/initrd* 
truncate -s 6G "$tmp/disk.img"
mkfs.ext4 -q -F -L vmroot -d "$tmp/root" "$tmp/disk.img"
mkdir -p "$dir"
mv "$tmp/vmlinuz" "$tmp/initrd.img" "$tmp/disk.img" "$dir/"
