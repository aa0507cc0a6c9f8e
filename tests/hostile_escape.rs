//! Hostile scripts, family 1: escape and privilege. Every test proves the attack is contained
//! (the call fails, with the errno the policy promises, or the script gets a clear JSON error),
//! that other clients are answered correctly while it runs and afterwards, and that the host is
//! left as it was.

use crate::common;
use crate::hostile;

use common::{assert_serving, Server};
use hostile::{assert_error, contained, during, HostSnapshot};
use serde_json::{json, Value};

/// `sc(name, *args)` → errno name ("OK" on success) of a raw syscall made through ctypes.
const SYSCALL_HELPER: &str = r#"
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
NR = {"ptrace": 101, "mount": 165, "umount2": 166, "unshare": 272, "setns": 308, "chroot": 161,
      "pivot_root": 155, "keyctl": 250, "add_key": 248, "request_key": 249, "bpf": 321,
      "perf_event_open": 298, "userfaultfd": 323, "io_uring_setup": 425, "io_uring_enter": 426,
      "io_uring_register": 427, "init_module": 175, "finit_module": 313, "delete_module": 176,
      "kexec_load": 246, "kexec_file_load": 320, "reboot": 169, "swapon": 167, "swapoff": 168,
      "acct": 163, "syslog": 103, "clone": 56, "clone3": 435, "process_vm_readv": 310,
      "process_vm_writev": 311, "open_by_handle_at": 304, "name_to_handle_at": 303,
      "fsopen": 430, "fsconfig": 431, "fsmount": 432, "open_tree": 428, "move_mount": 429,
      "fspick": 433, "mount_setattr": 442, "statmount": 457, "listmount": 458,
      "sethostname": 170, "setdomainname": 171, "settimeofday": 164, "clock_settime": 227,
      "clock_adjtime": 305, "adjtimex": 159, "iopl": 172, "ioperm": 173, "modify_ldt": 154,
      "personality": 135, "fanotify_init": 300, "kcmp": 312, "pidfd_getfd": 438,
      "process_madvise": 440, "setuid": 105, "setgid": 106, "setresuid": 117, "setgroups": 116,
      "capset": 126, "quotactl": 179, "quotactl_fd": 443, "vhangup": 153, "inotify_init": 253,
      "inotify_init1": 294, "flock": 73, "mbind": 237, "set_mempolicy": 238, "get_mempolicy": 239,
      "set_mempolicy_home_node": 450, "migrate_pages": 256, "move_pages": 279, "ustat": 136,
      "sysfs": 139, "cachestat": 451, "lsm_list_modules": 461, "lsm_get_self_attr": 459, "pidfd_open": 434,
      "getpid": 39, "uselib": 134, "_sysctl": 156, "nfsservctl": 180, "lookup_dcookie": 212,
      "create_module": 174, "get_kernel_syms": 177, "query_module": 178, "vserver": 236,
      "io_setup": 206, "io_destroy": 207, "io_getevents": 208, "io_submit": 209, "io_cancel": 210,
      "io_pgetevents": 333}

def sc(name, *args):
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(NR[name]), *[ctypes.c_long(a) for a in args])
    if r == 0 and name in ("clone",):
        os._exit(0)  # a clone that worked: the copy leaves at once
    if r >= 0:
        return "OK"
    return errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))
"#;

fn run(server: &Server, body: &str) -> common::Response {
    server.execute(&format!("{SYSCALL_HELPER}\n{body}"))
}

fn assert_all(result: &Value, allowed: &[&str]) {
    let map = result
        .as_object()
        .unwrap_or_else(|| panic!("expected an object, got {result}"));
    assert!(!map.is_empty());
    for (name, outcome) in map {
        let outcome = outcome.as_str().unwrap_or("");
        assert!(
            allowed.contains(&outcome),
            "{name}: {outcome} (allowed: {allowed:?}); all: {result}"
        );
    }
}

#[test]
fn privilege_changes_are_refused() {
    let server = hostile::shared_server();
    contained(&server, || {
        let r = run(
            &server,
            r#"
def main():
    out = {}
    out["setuid(0)"] = sc("setuid", 0)
    out["setgid(0)"] = sc("setgid", 0)
    out["setresuid(0,0,0)"] = sc("setresuid", 0, 0, 0)
    out["setgroups(0)"] = sc("setgroups", 0, 0)
    for name, call in [("os.setuid", lambda: os.setuid(0)), ("os.setgid", lambda: os.setgid(0)),
                       ("os.seteuid", lambda: os.seteuid(0)), ("os.setreuid", lambda: os.setreuid(0, 0))]:
        try:
            call()
            out[name] = "OK"
        except OSError as e:
            out[name] = errno.errorcode[e.errno]
    return out
"#,
        );
        assert_all(&r.result(), &["EPERM", "EINVAL"]);

        // What the script is left with: nobody, no capabilities, no way to gain any.
        let r = server.execute(
            "import os\ndef main():\n    s = dict(l.split(':\\t', 1) for l in open('/proc/self/status').read().splitlines() if ':\\t' in l)\n    return [os.getuid(), os.geteuid(), os.getgid(), s['CapEff'], s['CapPrm'], s['CapBnd'], s['CapAmb'], s['NoNewPrivs'], s['Seccomp']]\n",
        );
        assert_eq!(
            r.result(),
            json!([
                65534,
                65534,
                65534,
                "0000000000000000",
                "0000000000000000",
                "0000000000000000",
                "0000000000000000",
                "1",
                "2"
            ])
        );

        // Uncaught, the refusal is the script's runtime error.
        let r = server.execute("import os\ndef main():\n    os.setuid(0)\n    return 'root'\n");
        let body = assert_error(&r, 400, "runtime_error");
        // EINVAL (uid 0 is not mapped in the jail's user namespace) or EPERM.
        assert!(
            ["PermissionError", "OSError"].contains(&body["exception"]["type"].as_str().unwrap_or("")),
            "{body}"
        );
    });
}

/// Calls the filter refuses, each made so that without the filter the kernel would run it: it
/// would succeed (an unprivileged process may call `personality`, `sysfs`, `ustat`, `kcmp`,
/// `ptrace(TRACEME)`, `unshare(CLONE_NEWUSER)`, the mempolicy calls, `keyctl`, `flock`, ...)
/// or fail with its own errno (EPERM, EINVAL, EFAULT, EBADF). ENOSYS is the filter's answer
/// only: every one of these calls exists on the kernels this runs on.
const FILTERED_CALLS: &str = r#"
CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWNET, CLONE_NEWPID = 0x10000000, 0x00020000, 0x40000000, 0x20000000
SIGCHLD = 17
def filtered():
    me = os.getpid()
    pidfd = sc("pidfd_open", me, 0)
    buf = ctypes.create_string_buffer(256)
    node = ctypes.c_ulong(1)
    out = {}
    out["ptrace(ATTACH, 1)"] = sc("ptrace", 16, 1, 0, 0)
    out["ptrace(TRACEME)"] = sc("ptrace", 0, 0, 0, 0)
    out["process_vm_readv(self)"] = sc("process_vm_readv", me, 0, 0, 0, 0, 0)
    out["process_vm_writev(self)"] = sc("process_vm_writev", me, 0, 0, 0, 0, 0)
    out["kcmp(self, self)"] = sc("kcmp", me, me, 0, 0, 0)
    out["pidfd_getfd"] = sc("pidfd_getfd", 0, 0, 0)
    out["process_madvise"] = sc("process_madvise", 0, 0, 0, 0, 0)
    out["mount"] = sc("mount", 0, 0, 0, 0, 0)
    out["umount2"] = sc("umount2", 0, 0)
    out["pivot_root"] = sc("pivot_root", 0, 0)
    out["chroot"] = sc("chroot", 0)
    out["unshare(NEWUSER)"] = sc("unshare", CLONE_NEWUSER)
    out["unshare(NEWNS)"] = sc("unshare", CLONE_NEWNS)
    out["unshare(NEWNET)"] = sc("unshare", CLONE_NEWNET)
    out["setns"] = sc("setns", 0, 0)
    for call in ("fsopen", "fsconfig", "fsmount", "fspick", "open_tree", "move_mount",
                 "mount_setattr", "statmount", "listmount"):
        out[call] = sc(call, 0, 0, 0, 0, 0)
    out["keyctl(GET_KEYRING_ID)"] = sc("keyctl", 0, -3, 0, 0, 0)
    out["add_key"] = sc("add_key", 0, 0, 0, 0, 0)
    out["request_key"] = sc("request_key", 0, 0, 0, 0)
    out["bpf"] = sc("bpf", 0, 0, 0)
    out["perf_event_open"] = sc("perf_event_open", 0, 0, -1, -1, 0)
    out["userfaultfd"] = sc("userfaultfd", 0)
    out["io_uring_setup"] = sc("io_uring_setup", 1, 0)
    out["io_uring_enter"] = sc("io_uring_enter", 0, 0, 0, 0, 0, 0)
    out["io_uring_register"] = sc("io_uring_register", 0, 0, 0, 0)
    # Linux AIO contexts come from one host-wide budget (fs.aio-max-nr).
    ctx = ctypes.c_ulong(0)
    out["io_setup"] = sc("io_setup", 1, ctypes.addressof(ctx))
    for call in ("io_destroy", "io_getevents", "io_submit", "io_cancel", "io_pgetevents"):
        out[call] = sc(call, 0, 0, 0, 0, 0, 0)
    out["init_module"] = sc("init_module", 0, 0, 0)
    out["finit_module"] = sc("finit_module", 0, 0, 0)
    out["delete_module"] = sc("delete_module", 0, 0)
    out["kexec_load"] = sc("kexec_load", 0, 0, 0, 0)
    out["kexec_file_load"] = sc("kexec_file_load", 0, 0, 0, 0, 0)
    out["reboot"] = sc("reboot", 0, 0, 0, 0)
    out["swapon"] = sc("swapon", 0, 0)
    out["swapoff"] = sc("swapoff", 0)
    out["acct"] = sc("acct", 0)
    out["quotactl"] = sc("quotactl", 0, 0, 0, 0)
    out["syslog(SIZE_BUFFER)"] = sc("syslog", 10, 0, 0)
    out["vhangup"] = sc("vhangup")
    out["sethostname"] = sc("sethostname", 0, 0)
    out["setdomainname"] = sc("setdomainname", 0, 0)
    out["settimeofday"] = sc("settimeofday", 0, 0)
    out["clock_settime"] = sc("clock_settime", 0, 0)
    out["clock_adjtime(read)"] = sc("clock_adjtime", 0, 0)
    out["adjtimex(read)"] = sc("adjtimex", 0)
    out["iopl"] = sc("iopl", 3)
    out["ioperm"] = sc("ioperm", 0, 1024, 1)
    out["modify_ldt(read)"] = sc("modify_ldt", 0, ctypes.addressof(buf), 256)
    out["personality(query)"] = sc("personality", 0xffffffff)
    out["personality(ADDR_COMPAT_LAYOUT)"] = sc("personality", 0x0200000)
    out["fanotify_init"] = sc("fanotify_init", 0, 0)
    out["inotify_init"] = sc("inotify_init")
    out["inotify_init1"] = sc("inotify_init1", 0)
    out["flock(stdin)"] = sc("flock", 0, 2)
    out["open_by_handle_at"] = sc("open_by_handle_at", 0, 0, 0)
    out["name_to_handle_at"] = sc("name_to_handle_at", 0, 0, 0, 0, 0)
    out["get_mempolicy"] = sc("get_mempolicy", 0, 0, 0, 0, 0)
    out["set_mempolicy(DEFAULT)"] = sc("set_mempolicy", 0, 0, 0)
    out["mbind"] = sc("mbind", 0, 0, 0, 0, 0, 0)
    out["set_mempolicy_home_node"] = sc("set_mempolicy_home_node", 0, 0, 0, 0)
    out["migrate_pages(self)"] = sc("migrate_pages", me, 64, ctypes.addressof(node), ctypes.addressof(node))
    out["move_pages(self, query)"] = sc("move_pages", me, 0, 0, 0, 0, 0)
    out["ustat"] = sc("ustat", os.stat("/").st_dev, ctypes.addressof(buf))
    out["sysfs(count)"] = sc("sysfs", 3)
    out["lsm_list_modules"] = sc("lsm_list_modules", 0, 0, 0)
    out["cachestat(stdin)"] = sc("cachestat", 0, ctypes.addressof(buf), ctypes.addressof(buf), 0)
    out["lsm_get_self_attr"] = sc("lsm_get_self_attr", 0, 0, 0, 0)
    out["clone(NEWUSER)"] = sc("clone", CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0)
    out["clone(NEWNS)"] = sc("clone", CLONE_NEWNS | SIGCHLD, 0, 0, 0, 0)
    out["clone(NEWNET)"] = sc("clone", CLONE_NEWNET | SIGCHLD, 0, 0, 0, 0)
    out["clone(NEWPID)"] = sc("clone", CLONE_NEWPID | SIGCHLD, 0, 0, 0, 0)
    # clone3 hides its flags from seccomp: refused, so libc falls back to clone (above).
    out["clone3"] = sc("clone3", 0, 0)
    return out
"#;

#[test]
fn kernel_attack_surface_syscalls_are_refused_by_the_filter() {
    let server = hostile::shared_server();
    contained(&server, || {
        let r = run(
            &server,
            &format!("{FILTERED_CALLS}\ndef main():\n    return filtered()\n"),
        );
        assert_all(&r.result(), &["ENOSYS"]);

        // The jail runs under the filter, and the refusals above are the filter's: a call the
        // filter lets through answers for itself (pidfd_open of oneself works; getpid too).
        let r = run(
            &server,
            "def main():\n    s = open('/proc/self/status').read()\n    return [s.split('Seccomp:')[1].split()[0], sc('pidfd_open', os.getpid(), 0), sc('getpid'), sc('personality', 0xffffffff) ]\n",
        );
        assert_eq!(r.result(), json!(["2", "OK", "OK", "ENOSYS"]));

        // Calls a kernel may not have (removed, or configured out: quotactl_fd without quotas)
        // answer ENOSYS with or without the filter; they are refused anyway, so a kernel that
        // has them does not run them either.
        let r = run(
            &server,
            "def main():\n    return {n: sc(n, 0, 0, 0) for n in ['uselib', '_sysctl', 'nfsservctl', 'lookup_dcookie', 'create_module', 'get_kernel_syms', 'query_module', 'vserver', 'quotactl_fd']}\n",
        );
        assert_all(&r.result(), &["ENOSYS"]);
    });
}

/// fcntl's lock and notification commands that would let one jail see another's activity on
/// the shared read-only files; the record locks sqlite3 needs still work.
#[test]
fn fcntl_commands_that_cross_jails_are_refused() {
    let server = hostile::shared_server();
    contained(&server, || {
        let r = server.execute(
            r#"
import errno, fcntl, os, sqlite3, struct, tempfile
F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW, F_NOTIFY, DN_ACCESS = 36, 37, 38, 1026, 1
def attempt(call):
    try:
        call()
        return "OK"
    except OSError as e:
        return errno.errorcode[e.errno]
def main():
    shared = os.open("/usr/bin/python3.11", os.O_RDONLY)
    lock = struct.pack("hhqqi", fcntl.F_RDLCK, 0, 0, 0, 0)
    out = {name: attempt(lambda: fcntl.fcntl(shared, cmd, lock))
           for name, cmd in [("F_OFD_GETLK", F_OFD_GETLK), ("F_OFD_SETLK", F_OFD_SETLK),
                             ("F_OFD_SETLKW", F_OFD_SETLKW)]}
    directory = os.open("/usr/lib", os.O_RDONLY)
    out["F_NOTIFY"] = attempt(lambda: fcntl.fcntl(directory, F_NOTIFY, DN_ACCESS))
    # What stays: classic record locks, which sqlite3 uses in every journal mode.
    out["F_GETLK"] = attempt(lambda: fcntl.fcntl(shared, fcntl.F_GETLK, lock))
    with open("/tmp/lock", "w") as f:
        out["lockf"] = attempt(lambda: fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB))
    d = tempfile.mkdtemp()
    for mode in ("delete", "truncate", "wal"):
        path = os.path.join(d, mode + ".db")
        db = sqlite3.connect(path)
        db.execute("pragma journal_mode=" + mode)
        db.execute("create table t(x)")
        db.executemany("insert into t values (?)", [(i,) for i in range(10)])
        db.commit()
        other = sqlite3.connect(path)
        other.execute("insert into t values (100)")
        other.commit()
        out["sqlite3 " + mode] = db.execute("select sum(x) from t").fetchone()[0]
    return out
"#,
        );
        assert_eq!(
            r.result(),
            json!({
                "F_OFD_GETLK": "ENOSYS", "F_OFD_SETLK": "ENOSYS", "F_OFD_SETLKW": "ENOSYS",
                "F_NOTIFY": "ENOSYS", "F_GETLK": "OK", "lockf": "OK",
                "sqlite3 delete": 145, "sqlite3 truncate": 145, "sqlite3 wal": 145,
            })
        );
    });
}

#[test]
fn exotic_socket_families_are_refused() {
    let server = hostile::shared_server();
    contained(&server, || {
        let r = server.execute(
            r#"
import errno, socket
FAMILIES = {"AF_VSOCK": 40, "AF_NETLINK": 16, "AF_PACKET": 17, "AF_ALG": 38, "AF_BLUETOOTH": 31,
            "AF_CAN": 29, "AF_KEY": 15, "AF_XDP": 44, "AF_RDS": 21, "AF_TIPC": 30, "AF_X25": 9,
            "AF_APPLETALK": 5, "AF_IPX": 4, "AF_NFC": 39, "AF_QIPCRTR": 42, "AF_SMC": 43}
def main():
    out = {}
    for name, family in FAMILIES.items():
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM, socket.SOCK_RAW, socket.SOCK_SEQPACKET):
            try:
                socket.socket(family, kind, 0).close()
                out["%s/%d" % (name, kind)] = "OK"
            except OSError as e:
                out["%s/%d" % (name, kind)] = errno.errorcode.get(e.errno, str(e.errno))
    for proto in (0, 9, 15):  # NETLINK_ROUTE, NETLINK_AUDIT, NETLINK_KOBJECT_UEVENT
        try:
            socket.socket(16, socket.SOCK_RAW, proto).close()
            out["netlink proto %d" % proto] = "OK"
        except OSError as e:
            out["netlink proto %d" % proto] = errno.errorcode.get(e.errno, str(e.errno))
    return out
"#,
        );
        assert_all(&r.result(), &["ENOSYS"]);

        // socketpair is filtered the same way: Unix only.
        let r = server.execute(
            r#"
import errno, socket
def main():
    out = {}
    for family in (16, 40, 17, 38, 2, 10, 29, 31, 44):
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM, socket.SOCK_RAW, socket.SOCK_SEQPACKET):
            try:
                a, b = socket.socketpair(family, kind)
                a.close(); b.close()
                out["%d/%d" % (family, kind)] = "OK"
            except OSError as e:
                out["%d/%d" % (family, kind)] = errno.errorcode.get(e.errno, str(e.errno))
    return out
"#,
        );
        assert_all(&r.result(), &["ENOSYS"]);

        // Raw IP needs CAP_NET_RAW: refused too. Ordinary sockets can still be made.
        let r = server.execute(
            "import socket, errno\ndef main():\n    out = []\n    for fam, kind, proto in [(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP), (socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6), (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)]:\n        try:\n            socket.socket(fam, kind, proto).close(); out.append('OK')\n        except OSError as e:\n            out.append(errno.errorcode[e.errno])\n    a, b = socket.socketpair()\n    a.send(b'x')\n    socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()\n    return [out, b.recv(1).decode()]\n",
        );
        assert_eq!(r.result(), json!([["EPERM", "EPERM", "EPERM"], "x"]));
        let r = server.execute("import socket\ndef main():\n    out = []\n    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM, socket.SOCK_SEQPACKET):\n        a, b = socket.socketpair(socket.AF_UNIX, kind)\n        a.send(b'y')\n        out.append(b.recv(1).decode())\n    return out\n");
        assert_eq!(r.result(), json!(["y", "y", "y"]));
    });
}

#[test]
fn the_filesystem_is_read_only_outside_tmp() {
    let server = hostile::shared_server();
    let snapshot = HostSnapshot::take(&server);
    let marker = hostile::nonce("hostile-rofs");
    during(&server, || {
        let script = r#"
import errno, os, sys
MARKER = "@MARKER@"
def attempt(what, call):
    try:
        call()
        return "OK"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
def write(path):
    with open(path, "w") as f:
        f.write(MARKER)
def main():
    venv = os.path.dirname(os.path.dirname(sys.executable))
    out = {}
    for path in ["/" + MARKER, "/usr/" + MARKER, "/usr/bin/" + MARKER, "/etc/" + MARKER, "/etc/passwd",
                 "/etc/hosts", "/opt/" + MARKER, venv + "/" + MARKER, "/usr/lib/python3.11/os.py",
                 sys.executable, "/proc/sys/kernel/core_pattern", "/proc/sys/kernel/hostname",
                 "/proc/sys/vm/drop_caches", "/proc/sys/kernel/modprobe", "/proc/sysrq-trigger",
                 "/proc/self/oom_score_adj", "/proc/1/oom_score_adj", "/proc/self/attr/current",
                 "/proc/self/uid_map", "/proc/self/setgroups", "/dev/" + MARKER]:
        out["write " + path] = attempt(path, lambda: write(path))
    out["mkdir /usr/x"] = attempt("", lambda: os.mkdir("/usr/" + MARKER))
    out["chmod os.py"] = attempt("", lambda: os.chmod("/usr/lib/python3.11/os.py", 0o777))
    out["unlink /etc/passwd"] = attempt("", lambda: os.unlink("/etc/passwd"))
    out["rename /etc/hosts"] = attempt("", lambda: os.rename("/etc/hosts", "/etc/hosts2"))
    out["symlink in /"] = attempt("", lambda: os.symlink("/tmp", "/" + MARKER))
    out["utime python"] = attempt("", lambda: os.utime(sys.executable, (0, 0)))
    out["truncate os.py"] = attempt("", lambda: os.truncate("/usr/lib/python3.11/os.py", 0))
    return out
"#
        .replace("@MARKER@", &marker);
        let r = server.execute(&script);
        // EROFS for read-only mounts, EACCES/EPERM for files not ours, ENOENT for what is not there.
        assert_all(&r.result(), &["EROFS", "EACCES", "EPERM", "ENOENT"]);

        // /tmp is ours but mounted nosuid and nodev; /dev/shm is noexec too.
        let r = server.execute(
            "def main():\n    opts = {}\n    for line in open('/proc/self/mountinfo'):\n        f = line.split()\n        opts[f[4]] = f[5].split(',')\n    return {m: sorted(o for o in opts[m] if o in ('ro', 'rw', 'nosuid', 'nodev', 'noexec')) for m in ('/', '/usr', '/tmp', '/dev/shm', '/proc', '/etc/passwd')}\n",
        );
        assert_eq!(
            r.result(),
            json!({"/": ["ro"], "/usr": ["nodev", "nosuid", "ro"], "/tmp": ["nodev", "nosuid", "rw"],
                   "/dev/shm": ["nodev", "noexec", "nosuid", "rw"], "/proc": ["ro"], "/etc/passwd": ["ro"]})
        );
    });
    // Nothing reached the host's file system.
    for dir in ["/", "/usr", "/usr/bin", "/etc", "/opt", "/dev", "/tmp"] {
        assert!(
            !std::path::Path::new(dir).join(&marker).exists(),
            "{dir}/{marker} exists on the host"
        );
    }
    assert_serving(&server);
    snapshot.assert_restored();
}

#[test]
fn device_nodes_are_few_and_cannot_be_made() {
    let server = hostile::shared_server();
    let host_null_times = || {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata("/dev/null").unwrap();
        (meta.mtime(), meta.mtime_nsec(), meta.ctime(), meta.ctime_nsec())
    };
    let before = host_null_times();
    contained(&server, || {
        let r = server.execute(
            r#"
import errno, os, stat
def main():
    out = {"dev": sorted(os.listdir("/dev")), "sys": os.path.exists("/sys")}
    for path in ["/dev/mem", "/dev/kmem", "/dev/port", "/dev/kmsg", "/dev/vda", "/dev/sda", "/dev/tty",
                 "/dev/console", "/dev/net/tun", "/dev/fuse", "/dev/kvm", "/dev/loop0", "/dev/loop-control",
                 "/dev/ptmx", "/dev/pts", "/dev/disk", "/proc/kcore", "/sys/kernel"]:
        try:
            os.close(os.open(path, os.O_RDONLY))
            out[path] = "OK"
        except OSError as e:
            out[path] = errno.errorcode.get(e.errno, str(e.errno))
    for name, dev in [("mem", os.makedev(1, 1)), ("vda", os.makedev(254, 0)), ("kmsg", os.makedev(1, 11))]:
        try:
            os.mknod("/tmp/" + name, 0o666 | stat.S_IFCHR, dev)
            out["mknod " + name] = "OK"
        except OSError as e:
            out["mknod " + name] = errno.errorcode.get(e.errno, str(e.errno))
    # The host's own device inodes: their times are not the jail's to set (a channel from one
    # execution to the next).
    for path in ["/dev/null", "/dev/zero", "/dev/urandom"]:
        try:
            os.utime(path, None)
            out["utime " + path] = "OK"
        except OSError as e:
            out["utime " + path] = errno.errorcode.get(e.errno, str(e.errno))
    with open("/dev/null", "w") as f:
        f.write("into the void")
    out["zero"] = len(open("/dev/zero", "rb").read(16))
    out["urandom"] = len(open("/dev/urandom", "rb").read(16))
    return out
"#,
        );
        let result = r.result();
        assert_eq!(
            result["dev"],
            json!(["fd", "null", "random", "shm", "stderr", "stdin", "stdout", "urandom", "zero"]),
            "{result}"
        );
        assert_eq!(result["sys"], false);
        assert_eq!(
            (result["zero"].as_u64(), result["urandom"].as_u64()),
            (Some(16), Some(16))
        );
        for (key, value) in result.as_object().unwrap() {
            if key.starts_with('/') {
                // /proc/kcore exists in a fresh procfs, but only root may open it.
                assert!(
                    ["ENOENT", "EACCES", "EPERM"].contains(&value.as_str().unwrap()),
                    "{key}: {value}"
                );
            }
            if key.starts_with("mknod") {
                assert_eq!(value, "EPERM", "{key}");
            }
            if key.starts_with("utime") {
                assert_eq!(value, "EROFS", "{key}");
            }
        }
    });
    assert_eq!(host_null_times(), before, "the host's /dev/null was touched");
}

#[test]
fn pid_one_is_the_jails_own_runner() {
    let server = Server::start_with(&[("PE_SECRET", "pid-one-secret-3b7f")]);
    contained(&server, || {
        // The runner comes as its source (a zygote's child: in the zygote's command line) or
        // compiled, behind its bootstrap (a jail nsjail started).
        let script = r#"
import os
def main():
    environ = open("/proc/1/environ", "rb").read().split(b"\0")
    cmdline = open("/proc/1/cmdline", "rb").read().split(b"\0")
    status = dict(l.split(":\t", 1) for l in open("/proc/1/status").read().splitlines() if ":\t" in l)
    pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
    return {
        "environ_keys": sorted(e.split(b"=", 1)[0].decode() for e in environ if e),
        "argv0": os.path.basename(cmdline[0].decode()),
        "runner": any(form in b"\0".join(cmdline) for form in (b"python-executor's runner", BOOTSTRAP)),
        "ns_pid": status["NSpid"].split(),
        "uid": status["Uid"].split()[0],
        "ppid_of_1": status["PPid"],
        "me": os.getpid(),
        "parent": os.getppid(),
        "pids": pids,
        "secret": any(b"pid-one-secret" in open("/proc/%d/environ" % p, "rb").read() for p in pids),
    }
"#;
        let bootstrap = format!(
            "BOOTSTRAP = {:?}.encode()\n",
            python_executor::jail::protocol::RUNNER_BOOTSTRAP
        );
        let r = server.execute(&(bootstrap + script));
        let v = r.result();
        assert_eq!(v["argv0"], "python3", "{v}");
        assert_eq!(v["runner"], true, "{v}");
        assert_eq!(v["ns_pid"], json!(["1"]), "PID 1 of a namespace of its own: {v}");
        assert_eq!(v["ppid_of_1"], "0", "{v}");
        assert_eq!(v["uid"], "65534", "{v}");
        assert_eq!((v["me"].as_u64(), v["parent"].as_u64()), (Some(2), Some(1)), "{v}");
        assert_eq!(v["pids"], json!([1, 2]), "only the runner and the script: {v}");
        assert_eq!(v["secret"], false, "{v}");
        let keys: Vec<&str> = v["environ_keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap())
            .collect();
        for key in &keys {
            assert!(
                ["PATH", "HOME", "TMPDIR", "LANG", "MALLOC_ARENA_MAX"].contains(key)
                    || key.starts_with("PYTHON")
                    || key.ends_with("_THREADS")
                    || *key == "MPLCONFIGDIR",
                "unexpected variable {key} in PID 1's environment: {v}"
            );
        }
        assert!(
            !keys.contains(&"PE_SECRET") && !keys.contains(&"NSJAIL_PATH") && !keys.contains(&"PORT"),
            "{v}"
        );
    });
}

#[test]
fn ordinary_libraries_still_work_under_the_policy() {
    let server = hostile::shared_server();
    contained(&server, || {
        let r = server.execute(
            r#"
import asyncio, concurrent.futures, fcntl, mmap, multiprocessing, os, signal, socket, sqlite3
import subprocess, sys, tempfile, threading, time
import numpy as np
import pandas as pd

def square(x):
    return x * x

async def amain():
    p = await asyncio.create_subprocess_exec(sys.executable, "-c", "print(7)", stdout=asyncio.subprocess.PIPE)
    out, _ = await p.communicate()
    values = await asyncio.gather(*(asyncio.sleep(0.01, result=i) for i in range(5)))
    return [int(out), sum(values)]

def main():
    out = {}
    with multiprocessing.Pool(2) as pool:
        out["multiprocessing.Pool"] = pool.map(square, range(5))
    q = multiprocessing.Queue()
    p = multiprocessing.Process(target=q.put, args=(5,))
    p.start()
    out["multiprocessing.Queue"] = q.get(timeout=10)
    p.join()
    lock = multiprocessing.Lock()
    with lock:
        out["multiprocessing.Lock"] = True
    with concurrent.futures.ProcessPoolExecutor(2) as ex:
        out["ProcessPoolExecutor"] = list(ex.map(square, range(4)))
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        out["ThreadPoolExecutor"] = sum(ex.map(square, range(16)))
    threads = [threading.Thread(target=time.sleep, args=(0.2,)) for _ in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out["24 threads"] = True
    out["subprocess"] = subprocess.run([sys.executable, "-c", "print(1 + 1)"], capture_output=True, text=True).stdout
    pid = os.fork()
    if pid == 0:
        os._exit(3)
    out["fork"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    db = sqlite3.connect(os.path.join(tempfile.mkdtemp(), "x.db"))
    db.execute("create table t(x)")
    db.executemany("insert into t values (?)", [(i,) for i in range(10)])
    db.commit()
    out["sqlite3"] = db.execute("select sum(x) from t").fetchone()[0]
    with tempfile.NamedTemporaryFile() as f:
        f.write(b"abc")
        f.flush()
        out["tempfile"] = open(f.name, "rb").read().decode()
    with tempfile.TemporaryDirectory() as d:
        open(os.path.join(d, "a"), "w").close()
        out["TemporaryDirectory"] = os.listdir(d)
    out["asyncio"] = asyncio.run(amain())
    out["numpy"] = float(np.linalg.det(np.eye(3) * 2).round(6))
    out["pandas"] = pd.DataFrame({"g": ["a", "b", "a"], "v": [1, 2, 3]}).groupby("g")["v"].sum().to_dict()
    m = mmap.mmap(-1, 4096)
    m[:3] = b"abc"
    out["mmap"] = m[:3].decode()
    a, b = socket.socketpair()
    a.send(b"x")
    out["socketpair"] = b.recv(1).decode()
    fired = []
    signal.signal(signal.SIGALRM, lambda *_: fired.append(1))
    signal.setitimer(signal.ITIMER_REAL, 0.01)
    time.sleep(0.1)
    out["SIGALRM"] = fired == [1]
    with open("/tmp/lock", "w") as f:
        fcntl.lockf(f, fcntl.LOCK_EX)
        out["fcntl.lockf"] = True
    return out
"#,
        );
        assert_eq!(
            r.result(),
            json!({
                "multiprocessing.Pool": [0, 1, 4, 9, 16],
                "multiprocessing.Queue": 5,
                "multiprocessing.Lock": true,
                "ProcessPoolExecutor": [0, 1, 4, 9],
                "ThreadPoolExecutor": 1240,
                "24 threads": true,
                "subprocess": "2\n",
                "fork": 3,
                "sqlite3": 45,
                "tempfile": "abc",
                "TemporaryDirectory": ["a"],
                "asyncio": [7, 10],
                "numpy": 8.0,
                "pandas": {"a": 4, "b": 2},
                "mmap": "abc",
                "socketpair": "x",
                "SIGALRM": true,
                "fcntl.lockf": true,
            })
        );
    });
}

/// Machine code run through ctypes: a syscall by another ABI than x86-64's, which a filter that
/// only knows x86-64 numbers would let through under the wrong name.
const FOREIGN_ABI_HELPER: &str = r#"
import ctypes, errno, mmap, struct
def run(code):
    buf = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    buf.write(code)
    f = ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(buf)))
    r = f()
    return "OK %d" % r if r >= 0 else errno.errorcode.get(-r, str(r))
def int80(nr, ebx=0, ecx=0, edx=0):
    # i386 ABI: push rbx; mov eax/ebx/ecx/edx; int 0x80; pop rbx; ret
    return run(b"\x53\xb8" + struct.pack("<i", nr) + b"\xbb" + struct.pack("<i", ebx) + b"\xb9"
               + struct.pack("<i", ecx) + b"\xba" + struct.pack("<i", edx) + b"\xcd\x80\x5b\xc3")
def x32(nr, a=0, b=0):
    # x32 ABI: mov eax, nr | __X32_SYSCALL_BIT; mov edi/esi; syscall; ret
    return run(b"\xb8" + struct.pack("<I", nr | 0x40000000) + b"\xbf" + struct.pack("<i", a) + b"\xbe"
               + struct.pack("<i", b) + b"\x0f\x05\xc3")
"#;

#[test]
fn foreign_syscall_abis_cannot_get_around_the_filter() {
    let server = hostile::shared_server();
    contained(&server, || {
        // i386 keyctl is 288, which is accept4 on x86-64; i386 setns is 346, unused on x86-64.
        // Any i386 call at all kills the process: the filter checks the architecture.
        for call in [
            "int80(20)",
            "int80(288, 0, -3, 0)",
            "int80(346, -1, 0)",
            "int80(310, 0x10000000)",
        ] {
            let r = server.execute(&format!("{FOREIGN_ABI_HELPER}\ndef main():\n    return {call}\n"));
            let body = assert_error(&r, 400, "exited");
            assert_eq!(body["signal"], 31, "{call} (SIGSYS expected): {body}");
        }
        // x32 calls never reach setns or keyctl (ENOSYS: no x32 here, or refused by the filter).
        let r = server.execute(&format!(
            "{FOREIGN_ABI_HELPER}\ndef main():\n    return [x32(39), x32(308, -1, 0), x32(250, 0, -3)]\n"
        ));
        for outcome in r.result().as_array().unwrap() {
            assert!(["ENOSYS", "EPERM"].contains(&outcome.as_str().unwrap()), "{}", r.text());
        }
    });
}
