"""python-executor's zygote: forks executions instead of booting them.

The service starts it inside nsjail (the top-level nsjail.cfg, plus the zygote role's command-line
additions: a seccomp policy that lets it make namespaces, and a writable /proc so a child can
write its own uid_map) as

    python3 -I -B -c <this file> <settings JSON> <runner.py source> [module ...]

It imports the flavour's modules once, says `ready` on its control socket (fd 3, SOCK_SEQPACKET)
and then only ever forks: it never reads or runs a script. Per execution the service sends one
message, `fork <limits JSON>`, carrying five fds (SCM_RIGHTS): the request pipe, stdout, stderr,
the result channel, and a socket of the execution's own (`ctl`). One `clone` makes the child
with new user, mount, network, IPC, UTS and PID namespaces: it is PID 1 of its own PID
namespace from its first instruction (one copy of the zygote's page tables per execution, not
two: fork, unshare and fork again would copy them twice). The zygote clones it with the host
uid and gid the service chose for this execution as its effective ids (the service's ids are
mapped into the zygote's user namespace, where the zygote has CAP_SETUID and CAP_SETGID, its
only capabilities; it takes its own back at once), so that the new user namespace is that id's:
what the kernel charges up the namespace chain (pending signals, ...) is the execution's own,
not shared by every child of the zygote. The child becomes a complete jail before anything
reaches it:

1. its fds are exactly 0-3 (request, stdout, stderr, result) and ctl; every other one is closed;
   it maps 65534 in its user namespace to its id (the one mapping it may write unprivileged);
2. it says `hello` on ctl with SCM_CREDENTIALS (the kernel gives the service its host pid) and
   waits for `go`: by then the service has moved it into the execution's own cgroup, which
   becomes the root of the cgroup namespace it makes then;
3. it lowers its rlimits to the execution's, brings up loopback, mounts a fresh /tmp and
   /dev/shm with the options nsjail gave the zygote's own and its own read-only /proc, drops its
   capability bounding set, becomes 65534 (the execution's host id) and drops every other
   capability, sets no_new_privs and installs the execution filter (stacked on nsjail's: it
   denies what the zygote's policy let through, and the x32 ABI);
4. it closes ctl, re-seeds every random generator, and only then runs the runner, which says
   `ready` on the result channel; the service writes the request only after that. When it
   exits, the zygote (its parent, ignoring SIGCHLD) lets the kernel reap it.

Not the same as a forked child: glibc's cached thread id of PID 1's main thread is the zygote's
(only `pthread_kill` of the main thread from another thread reads it, and only within its own
process); every process a script starts is forked normally.

Not re-seeded: the str/bytes hash secret (fixed when the interpreter starts), shared by every
child of one zygote: a script can learn hash() values, which say nothing about another
execution's data; zygotes are replaced after a bounded number of forks.
"""

import ctypes
import json
import os
import signal
import socket
import struct
import sys
import types

CONTROL_FD = 3
ID = 65534
CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS = 0x00020000, 0x02000000, 0x04000000
CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x08000000, 0x10000000, 0x20000000, 0x40000000
# The cgroup namespace is made after the service has moved the child into its cgroup.
CHILD_NAMESPACES = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWPID
SYS_CLONE, SIGCHLD = 56, 17  # x86-64
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 1, 2, 4, 8, 0x4000, 1 << 18
PR_SET_NO_NEW_PRIVS, PR_CAPBSET_DROP, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 24, 22, 2
PR_SET_DUMPABLE = 4
RLIMITS = {"as": "RLIMIT_AS", "cpu": "RLIMIT_CPU", "nproc": "RLIMIT_NPROC"}
# Exit statuses of a child that gave up during set-up (the service sees no `ready`, only EOF).
SETUP_FAILED = 121

libc = ctypes.CDLL(None, use_errno=True)
# clone must run with the GIL held, as os.fork's fork() does: the child re-creates it.
libc_holding_gil = ctypes.PyDLL(None, use_errno=True)
libc_holding_gil.syscall.restype = ctypes.c_long


def check(result, what):
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, "%s: %s" % (what, os.strerror(errno)))
    return result


def seccomp_filter(denied, clone_flags, errno):
    """BPF for the execution's filter: the architecture is x86-64 (else kill), the x32 ABI gets
    ENOSYS, the `denied` syscall numbers and a clone with any of `clone_flags` get `errno`
    (nsjail.cfg's), anything else is left to nsjail's filter."""
    def insn(code, k, jt=0, jf=0):
        return struct.pack("=HBBI", code, jt, jf, k)

    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    prog = [insn(ld, 4), insn(jeq, 0xC000003E, 1, 0), insn(ret, 0x80000000),  # arch; KILL_PROCESS
            insn(ld, 0), insn(jge, 0x40000000, 0, 1), insn(ret, 0x00050000 | 38)]  # nr; x32: ENOSYS
    for nr in denied:
        prog += [insn(jeq, nr, 0, 1), insn(ret, 0x00050000 | errno)]
    if clone_flags:
        # clone's flags are its first argument (the flags all sit in its low 32 bits).
        prog += [insn(jeq, SYS_CLONE, 0, 3), insn(ld, 16), insn(jset, clone_flags, 0, 1),
                 insn(ret, 0x00050000 | errno)]
    prog.append(insn(ret, 0x7FFF0000))  # ALLOW: nsjail's filter still applies
    code = b"".join(prog)
    buffer = ctypes.create_string_buffer(code, len(code))
    return buffer, struct.pack("=HxxxxxxQ", len(prog), ctypes.addressof(buffer))


def scratch_mounts():
    """(mount point, flags, options) of /tmp and /dev/shm exactly as nsjail mounted them for the
    zygote from nsjail.cfg: each child gets fresh ones just like them."""
    flags = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC}
    found = {}
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            left, right = line.split(" - ", 1)
            point, options = left.split()[4:6]
            fstype, _, super_options = right.split()[:3]
            if point in ("/tmp", "/dev/shm") and fstype == "tmpfs":
                bits = sum(flags.get(o, 0) for o in options.split(","))
                # uid=/gid= name the zygote's own owner, which the child's user namespace does
                # not map (EINVAL): the child's scratch belongs to the execution's id (`child`).
                kept = ",".join(o for o in super_options.split(",")
                                if o not in ("rw", "ro") and not o.startswith(("uid=", "gid=")))
                found[point] = (bits, kept)
    return [(point,) + found[point] for point in ("/tmp", "/dev/shm")]


def refuse_shared_writable_memory():
    """A writable shared mapping in the zygote would be shared by all its children: one could
    leave something there for the next. Python, numpy and pandas make none; refuse to start if
    a module did."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            if line.split()[1][1] == "w" and line.split()[1][3] == "s":
                raise SystemExit("zygote: writable shared mapping: %s" % line.strip())


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def mount(source, target, fstype, flags, options):
    check(libc.mount(source, target.encode(), fstype, flags, options), "mount " + target)


def loopback_up():
    """Brings up `lo` in the new network namespace, as nsjail does in a jail's."""
    import fcntl

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(s, 0x8914, struct.pack("16sH22x", b"lo", 0x1 | 0x40))  # SIOCSIFFLAGS: UP, RUNNING


def drop_bounding_set():
    for cap in range(64):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0:
            if ctypes.get_errno() == 22:
                break  # EINVAL: past the last capability this kernel knows
            check(-1, "capability bounding set")


def drop_capabilities():
    header = struct.pack("=Ii", 0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = bytes(24)  # effective, permitted, inheritable: all zero, both 32-bit halves
    check(libc.syscall(126, header, data), "capset")  # SYS_capset on x86-64


def clone(own):
    """fork(), as os.fork does it, but into new namespaces: the child is PID 1 of its own, and
    its user namespace belongs to `own` (the effective ids it is cloned with)."""
    euid, egid = os.geteuid(), os.getegid()
    pid, errno = -1, 0
    try:
        os.setresgid(-1, own, -1)
        os.setresuid(-1, own, -1)
        ctypes.pythonapi.PyOS_BeforeFork()
        no = ctypes.c_long(0)  # no new stack (the child's is a copy), no tid pointers, no TLS
        pid = libc_holding_gil.syscall(ctypes.c_long(SYS_CLONE), ctypes.c_long(CHILD_NAMESPACES | SIGCHLD), no, no, no, no)
        if pid == 0:
            ctypes.pythonapi.PyOS_AfterFork_Child()
            return 0
        errno = ctypes.get_errno()
        ctypes.pythonapi.PyOS_AfterFork_Parent()
    finally:
        if pid != 0:
            try:
                os.setresuid(-1, euid, -1)
                os.setresgid(-1, egid, -1)
                check(libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), "dumpable")  # as it was before
            except BaseException:
                os._exit(SETUP_FAILED)  # never go on as an execution's id: the service replaces us
    if pid < 0:
        raise OSError(errno, "clone: %s" % os.strerror(errno))
    return pid


def child(fds, request, prog, mounts):
    """The cloned child, PID 1 of its namespaces: becomes a jail (returns ready for the runner)."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    stdin, stdout, stderr, result, ctl = fds
    for source, target in ((stdin, 0), (stdout, 1), (stderr, 2), (result, 3), (ctl, 4)):
        os.dup2(source, target)  # every source is above 3: nothing is overwritten early
    os.closerange(5, os.sysconf("SC_OPEN_MAX"))
    # Changing ids made the zygote, and so this copy, non-dumpable: /proc/self would be root's.
    check(libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), "dumpable")
    own = int(request["id"])
    write("/proc/self/setgroups", "deny")
    write("/proc/self/uid_map", "%d %d 1" % (ID, own))
    write("/proc/self/gid_map", "%d %d 1" % (ID, own))
    ctl = socket.socket(fileno=4)
    ucred = struct.pack("3i", os.getpid(), os.getuid(), os.getgid())
    ctl.sendmsg([b"hello"], [(socket.SOL_SOCKET, socket.SCM_CREDENTIALS, ucred)])
    if ctl.recv(16) != b"go":
        os._exit(SETUP_FAILED)  # the service gave up on this execution
    check(libc.unshare(CLONE_NEWCGROUP), "unshare")  # rooted at the execution's cgroup

    import resource

    for key, value in request["rlimits"].items():
        which = getattr(resource, RLIMITS[key])
        hard = resource.getrlimit(which)[1]
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)  # only ever lower
        resource.setrlimit(which, (value, value))
    loopback_up()
    mount(None, "/", None, MS_REC | MS_PRIVATE, None)
    for point, flags, options in mounts:
        owner = "uid=%d,gid=%d" % (ID, ID)  # the execution's, as a jail's are in nsjail
        mount(b"tmpfs", point, b"tmpfs", flags, (options + "," + owner if options else owner).encode())
    os.chdir("/tmp")  # the old cwd is the zygote's /tmp, now hidden: never keep it
    mount(b"proc", "/proc", b"proc", MS_RDONLY, None)  # as nsjail.cfg mounts a jail's
    drop_bounding_set()
    if os.getgroups():
        raise OSError("supplementary groups left")  # the zygote dropped its own
    os.setresgid(ID, ID, ID)
    os.setresuid(ID, ID, ID)
    if (os.getresuid(), os.getresgid()) != ((ID,) * 3, (ID,) * 3):
        raise OSError("cannot become the execution's own id")
    # Changing ids made the process non-dumpable: /proc/self would be root's.
    check(libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), "dumpable")
    drop_capabilities()
    check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    check(libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, prog, 0, 0), "seccomp")
    ctl.close()
    os.closerange(4, os.sysconf("SC_OPEN_MAX"))
    import random

    random.seed()
    legacy = sys.modules.get("numpy.random")  # loaded by pandas (numpy loads it lazily)
    if legacy is not None:
        legacy.seed()  # the legacy global RandomState; Generators are seeded per call


def main():
    """The zygote's loop. Returns only in a forked child that has become a jail, with the
    runner to run there."""
    settings, runner_source, modules = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3:]
    runner = types.ModuleType("runner")
    exec(compile(runner_source, "<runner>", "exec"), runner.__dict__)
    # As in a jail before its modules: matplotlib imported here must find the same backend
    # (`Agg`, not its own guess `agg`) and the install-time font cache, not build one.
    runner.prepare_matplotlib()
    for name in modules:
        __import__(name)
    runner.warm_up(everything=True)  # once here, so that no child pays for it
    import random, resource  # noqa: F401 (each child's set-up uses them)

    refuse_shared_writable_memory()
    mounts = scratch_mounts()
    buffer, prog = seccomp_filter(settings["deny"], settings.get("clone_flags", 0), settings.get("errno", 1))
    os.setgroups([])  # the children's supplementary groups: none
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps children and orphans
    control = socket.socket(fileno=CONTROL_FD)
    control.send(b"ready")
    while True:
        message, fds, _, _ = socket.recv_fds(control, 4096, 5)
        if not message:
            return None  # the service is gone
        request = None
        if len(fds) == 5 and message.startswith(b"fork "):
            try:
                request = json.loads(message[5:])
                own = int(request["id"])
            except Exception:
                request = None
        if request is None:
            for fd in fds:
                os.close(fd)
            continue
        try:
            pid = clone(own)
        except OSError:
            pid = -1  # the child's ctl closes below: the service sees it at once
        if pid == 0:
            try:
                control.detach()  # fd 3 is about to be the result channel
                child(fds, request, prog, mounts)
                return runner
            except BaseException as exc:
                # Set-up failed: say why on ctl (fd 4 until it is closed), for the service's log.
                try:
                    os.write(4, ("error %r" % (exc,)).encode("ascii", "replace")[:2000])
                except BaseException:
                    pass
                os._exit(SETUP_FAILED)
        for fd in fds:
            os.close(fd)


if __name__ == "__main__":
    # In a child that has become a jail: the runner, at top level as `python3 -c runner.py`
    # runs it (a script's sys.exit or a crash ends its process the same way).
    runner = main()
    if runner is None:
        sys.exit(0)  # the zygote itself: the service is gone
    sys.argv = [sys.argv[0], "warm"]
    runner.main()
    # PID 1 has reported and everything else in its namespace is gone: no need to tear the
    # interpreter down (and pay for it).
    runner.flush_std()
    os._exit(0)
