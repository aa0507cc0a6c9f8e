#!/usr/bin/env bash
# Installs what `make vm-test` needs on the host (Debian bookworm, root), idempotently:
# QEMU from bookworm-backports (with -t, so its data and seabios come from there too) (bookworm's own 7.2 conflicts with a newer qemu-utils), mmdebstrap
# for the VM's root file system, buildah for the image, e2fsprogs for the disk, cpio for the initrd.
set -euo pipefail
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v buildah >/dev/null || need+=(buildah)
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
command -v cpio >/dev/null || need+=(cpio)
[ ${#need[@]} = 0 ] && exit 0
if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  cat > /etc/apt/sources.list.d/bookworm-backports.sources <<'SOURCES'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
fi
echo "vm-test: installing ${need[*]} (Debian packages)" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -t bookworm-backports "${need[@]}" >/dev/null
