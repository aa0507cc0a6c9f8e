#!/bin/bash
# PID 1 of the `make vm-test` VM (its /sbin/vm-init mounts the repository and runs this). Does what systemd would
# do for the parts that matter here, then runs the checks from the shared repository and powers
# off. Kernel command line: vm.repo=<host path of the repository> (mounted at the same path,
# so the service's build and the sandbox's virtualenv work unchanged) and vm.script=<path>.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mountpoint -q /proc || mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
echo python-executor-vm > /proc/sys/kernel/hostname
ip link set lo up
# cgroup v2 as systemd mounts it (nsdelegate), with every controller enabled at the root, one at
# a time (one the kernel refuses must not stop the others), and this shell in a leaf of its own.
mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
for c in $(cat /sys/fs/cgroup/cgroup.controllers); do
  echo "+$c" > /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || echo "vm-init: controller $c not enabled"
done
mkdir -p /sys/fs/cgroup/init.scope
echo $$ > /sys/fs/cgroup/init.scope/cgroup.procs
repo= script=
for arg in $(cat /proc/cmdline); do
  case $arg in vm.repo=*) repo=${arg#vm.repo=} ;; vm.script=*) script=${arg#vm.script=} ;; esac
done
mkdir -p /share
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 work /share
echo "vm-init: $(uname -r), cgroup controllers: $(cat /sys/fs/cgroup/cgroup.subtree_control)"
status=1
if [ -x "$script" ]; then
  VM_REPO=$repo bash "$script" 2>&1 | tee /share/guest.log
  status=${PIPESTATUS[0]}
else
  echo "vm-init: no script $script"
fi
echo "$status" > /share/guest.status
sync
umount /share 2>/dev/null
echo "vm-init: done ($status)"
busybox poweroff -f
