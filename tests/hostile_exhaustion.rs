//! Hostile scripts, family 3: exhaustion. Processes, threads, memory, disk, inodes, CPU,
//! output, result size and file descriptors are each bounded per execution; the attack ends
//! in a clear answer, other clients are served meanwhile, and nothing is left behind.

use crate::common;
use crate::hostile;

use common::Server;
use hostile::{assert_error, contained};
use serde_json::json;
use std::time::{Duration, Instant};

/// Runs a script under a time limit of `limit` seconds (asked for by the request, which may
/// lower the service's): it must be answered within `limit + 5`.
fn timed(server: &Server, script: &str, limit: f64) -> common::Response {
    let started = Instant::now();
    let r = server.post_json("/execute", &json!({"script": script, "timeout_seconds": limit}));
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs_f64(limit + 5.0),
        "a {limit} s limit answered after {took:?}: {}",
        r.text()
    );
    r
}

#[test]
fn fork_bombs_hit_the_process_limit() {
    let server = hostile::shared_server_with(&[("TIMEOUT_SECONDS", "3")]);
    contained(&server, || {
        // Children that stay alive until fork fails: the pids cgroup says no.
        let r = server.execute(
            "import errno, os, time\ndef main():\n    n = 0\n    while True:\n        try:\n            pid = os.fork()\n        except OSError as e:\n            return [n, errno.errorcode[e.errno]]\n        if pid == 0:\n            time.sleep(60)\n            os._exit(0)\n        n += 1\n",
        );
        let v = r.result();
        assert_eq!(v[1], "EAGAIN", "{v}");
        assert!(v[0].as_u64().unwrap() < 64, "more processes than MAX_PROCESSES: {v}");
        // The same with programs.
        let r = server.execute(
            "import subprocess\ndef main():\n    procs = []\n    try:\n        while True:\n            procs.append(subprocess.Popen(['/bin/sleep', '60']))\n    except OSError as e:\n        return [len(procs), type(e).__name__]\n",
        );
        let v = r.result();
        assert!(v[0].as_u64().unwrap() < 64, "{v}");
        // The classic: forks forever, everyone. It runs into the wall clock.
        let r = timed(&server, "import os\ndef main():\n    while True:\n        try:\n            os.fork()\n        except OSError:\n            pass\n", 0.5);
        let body = assert_error(&r, 400, "timeout");
        assert_eq!(body["limit_seconds"], 0.5);
    });
}

#[test]
fn thread_bombs_hit_the_process_limit() {
    let server = hostile::shared_server();
    contained(&server, || {
        let r = server.execute(
            "import threading, time\ndef main():\n    threads = []\n    try:\n        while True:\n            t = threading.Thread(target=time.sleep, args=(30,), daemon=True)\n            t.start()\n            threads.append(t)\n    except RuntimeError as e:\n        return [len(threads), str(e)]\n",
        );
        let v = r.result();
        let count = v[0].as_u64().unwrap();
        assert_eq!(v[1], "can't start new thread", "{v}");
        // The pids cgroup (64, threads included) is the bound, not address space per thread.
        assert!((30..64).contains(&count), "{count} threads: {v}");
    });
}

#[test]
fn memory_bombs_end_in_memory_limit() {
    // A long time limit: bombs end on memory, even on a machine so loaded that they crawl.
    let server = Server::start_with(&[("MEMORY_LIMIT_MB", "256"), ("TIMEOUT_SECONDS", "10")]);
    contained(&server, || {
        let bombs = [
            ("one allocation", "def main():\n    x = bytearray(2 * 1024 ** 3)\n    return len(x)\n"),
            (
                "slow creep",
                "import time\ndef main():\n    chunks = []\n    while True:\n        chunks.append(bytearray(4 * 1024 * 1024))\n        time.sleep(0.005)\n",
            ),
            (
                "many processes, each under the limit",
                "import os, time\ndef main():\n    kids = []\n    for i in range(6):\n        pid = os.fork()\n        if pid == 0:\n            b = bytearray(80 * 1024 * 1024)\n            for j in range(0, len(b), 4096):\n                b[j] = 1\n            time.sleep(60)\n            os._exit(0)\n        kids.append(pid)\n    for pid in kids:\n        os.waitpid(pid, 0)\n    return 'all done'\n",
            ),
            ("numpy", "import numpy as np\ndef main():\n    return float(np.ones((40000, 1000)).sum())\n"),
            (
                // main returns the moment the child is killed: before any watch could see it.
                "a child killed for memory just before main returns",
                "import subprocess, sys\ndef main():\n    return subprocess.run([sys.executable, '-c', 'b = bytearray(400 * 1024 * 1024)']).returncode\n",
            ),
            (
                "memory in /tmp and /dev/shm plus the heap",
                "def main():\n    for path in ('/tmp/a', '/dev/shm/a'):\n        try:\n            with open(path, 'wb') as f:\n                while True:\n                    f.write(b'x' * (1 << 20))\n        except OSError:\n            pass\n    keep = []\n    while True:\n        keep.append(bytearray(8 * 1024 * 1024))\n",
            ),
        ];
        for (what, script) in bombs {
            let r = timed(&server, script, 10.0);
            let body = assert_error(&r, 400, "memory_limit");
            assert_eq!(body["limit_mb"], 256, "{what}: {body}");
        }
        // A request may lower the limit for itself.
        let r = server.post_json(
            "/execute",
            &json!({"script": "def main():\n    return len(bytearray(100 * 1024 * 1024))\n", "memory_mb": 64}),
        );
        let body = assert_error(&r, 400, "memory_limit");
        assert_eq!(body["limit_mb"], 64);
    });
}

/// Socket buffers are memory the kernel holds for a jail: cgroup v2 counts them in its memory,
/// v1 only with a socket limit set. Unbounded, one jail's loopback sockets held gigabytes and
/// reached the host's TCP limit, failing connections all over the host (the service's own).
#[test]
fn socket_buffers_count_against_the_memory_limit() {
    let server = hostile::shared_server();
    contained(&server, || {
        // TCP pairs and UDP receivers with the largest buffers a process may ask for, filled
        // and never read; then every byte still held is counted.
        let script = r#"import socket
def main():
    big = 4 << 20
    listener = socket.socket()
    listener.bind(('127.0.0.1', 0))
    listener.listen(128)
    tcp, pairs = 0, []
    for i in range(80):
        c = socket.socket()
        c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, big)
        c.connect(listener.getsockname())
        s, _ = listener.accept()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, big)
        c.setblocking(False)
        while True:
            try:
                tcp += c.send(b'x' * (1 << 20))
            except BlockingIOError:
                break
        pairs.append((c, s))
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.setblocking(False)
    receivers = []
    for i in range(60):
        r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        r.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, big)
        r.bind(('127.0.0.1', 0))
        r.setblocking(False)
        for k in range(150):
            try:
                sender.sendto(b'y' * 60000, r.getsockname())
            except BlockingIOError:
                pass
        receivers.append(r)
    udp = 0
    for r in receivers:
        while True:
            try:
                udp += len(r.recv(65536))
            except BlockingIOError:
                break
    return [tcp, udp]
"#;
        let r = server.post_json("/execute", &json!({"script": script, "memory_mb": 64}));
        if r.status == 200 {
            let held = r.result();
            let (tcp, udp) = (held[0].as_u64().unwrap_or(0), held[1].as_u64().unwrap_or(0));
            assert!(tcp > 1 << 20, "the sockets were not filled: {held}");
            assert!(
                tcp + udp < 128 << 20,
                "a 64 MiB jail held {tcp} bytes in TCP and {udp} in UDP buffers"
            );
        } else {
            // cgroup v2 may end it as any other allocation over the limit.
            assert_error(&r, 400, "memory_limit");
        }
    });
}

/// Memory the jails' cgroups hold now (their parent's usage: every jail, and what removed ones
/// left charged to it), in bytes; `None` without a memory cgroup.
fn jails_memory(server: &Server) -> Option<u64> {
    common::service_cgroups(server.pid()).iter().find_map(|parent| {
        ["memory.current", "memory.usage_in_bytes"]
            .iter()
            .find_map(|file| std::fs::read_to_string(parent.join(file)).ok())
            .and_then(|text| text.trim().parse().ok())
    })
}

/// Descriptors sent over a Unix socket that is itself in flight (a cycle) outlive every process
/// of the jail, and so does what they hold: 160 MiB of memfds stayed charged to the service for
/// as long as no Unix socket was released anywhere on the host (20 s and more on an idle one).
/// The service has the kernel collect them once a jail is gone. (On a busy host any other
/// release collects them too: this fails only where nothing else does.)
#[test]
fn memory_left_in_flight_on_unix_sockets_is_freed_with_the_jail() {
    // A server of its own: its jails' memory is this test's alone.
    let server = Server::start_cold();
    let Some(before) = jails_memory(&server) else {
        let health = server.get("/health").json();
        assert!(
            health["isolation"]["cgroup"].is_null(),
            "no memory cgroup found: {health}"
        );
        return;
    };
    // No bystander (as `contained` has): its next execution would release a socket too.
    let snapshot = hostile::HostSnapshot::take(&server);
    {
        let script = r#"import os, socket
def main():
    for _ in range(4):
        fd = os.memfd_create("m")
        os.write(fd, b"x" * (40 << 20))
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        socket.send_fds(a, [b"!"], [fd, a.fileno(), b.fileno()])
        os.close(fd)
        a.close()
        b.close()
    return "sent"
"#;
        let r = server.post_json("/execute", &json!({"script": script, "memory_mb": 256}));
        assert_eq!(r.json(), json!({"result": "sent", "stdout": ""}), "{}", r.text());
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let now = jails_memory(&server).unwrap_or(0);
            if now < before + (64 << 20) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} MiB still held by the jails' cgroups 5 s after the execution ({} MiB before)",
                now >> 20,
                before >> 20
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    common::assert_serving(&server);
    snapshot.assert_restored();
}

#[test]
fn disk_inodes_and_shared_memory_are_capped() {
    let server = hostile::shared_server();
    contained(&server, || {
        let r = server.execute(
            r#"
import errno, os
def fill(path):
    written = 0
    try:
        with open(path, "wb") as f:
            while True:
                f.write(b"x" * (1 << 20))
                f.flush()
                written += 1 << 20
    except OSError as e:
        size = os.path.getsize(path)
        os.unlink(path)
        return [errno.errorcode[e.errno], size]

def main():
    out = {"tmp": fill("/tmp/big"), "shm": fill("/dev/shm/big")}
    n = 0
    try:
        while True:
            open("/tmp/f%d" % n, "w").close()
            n += 1
    except OSError as e:
        out["inodes"] = [errno.errorcode[e.errno], n]
    for i in range(n):
        os.unlink("/tmp/f%d" % i)
    n = 0
    try:
        while True:
            os.mkdir("/tmp/d%d" % n)
            n += 1
    except OSError as e:
        out["dirs"] = [errno.errorcode[e.errno], n]
    return out
"#,
        );
        let v = r.result();
        let mib = 1024 * 1024;
        // A file is capped by RLIMIT_FSIZE (EFBIG) or the 64 MiB tmpfs (ENOSPC), whichever first.
        assert!(["EFBIG", "ENOSPC"].contains(&v["tmp"][0].as_str().unwrap()), "{v}");
        assert!(v["tmp"][1].as_u64().unwrap() <= 64 * mib, "{v}");
        assert_eq!(v["shm"][0], "ENOSPC", "{v}");
        assert!(v["shm"][1].as_u64().unwrap() <= 16 * mib, "{v}");
        assert_eq!(v["inodes"][0], "ENOSPC", "{v}");
        assert!(v["inodes"][1].as_u64().unwrap() <= 4096, "{v}");
        assert_eq!(v["dirs"][0], "ENOSPC", "{v}");
        // Left full on purpose: the next execution still gets a fresh /tmp, empty but for its own
        // working directory.
        let r = server.execute(
            "import os\ndef main():\n    for i in range(5000):\n        try:\n            open('/tmp/g%d' % i, 'w').close()\n        except OSError:\n            break\n    with open('/dev/shm/x', 'wb') as f:\n        f.write(b'y' * (15 << 20))\n    return 'filled'\n",
        );
        assert_eq!(r.result(), "filled");
        let r = server.execute("import os\ndef main():\n    return [[n for n in os.listdir('/tmp') if n != os.path.basename(os.getcwd())], os.listdir('/dev/shm'), os.statvfs('/tmp').f_bfree == os.statvfs('/tmp').f_blocks]\n");
        assert_eq!(r.result(), json!([[], [], true]));
    });
}

#[test]
fn cpu_burn_in_many_processes_times_out() {
    let server = hostile::shared_server_with(&[("TIMEOUT_SECONDS", "3")]);
    contained(&server, || {
        let r = timed(
            &server,
            "import os, threading\ndef burn():\n    while True:\n        pass\ndef main():\n    for i in range(12):\n        if os.fork() == 0:\n            for t in range(3):\n                threading.Thread(target=burn, daemon=True).start()\n            burn()\n    burn()\n",
            0.5,
        );
        assert_error(&r, 400, "timeout");
        // Burning in C (no bytecode boundary to interrupt) ends the same way.
        let r = timed(&server, "def main():\n    return sum(range(10 ** 12))\n", 0.5);
        assert_error(&r, 400, "timeout");
    });
}

#[test]
fn output_floods_are_capped_and_flagged() {
    let cap = 65536;
    let server = Server::start_with(&[("MAX_OUTPUT_BYTES", "65536"), ("TIMEOUT_SECONDS", "3")]);
    contained(&server, || {
        // stdout: 50 MB, then an answer.
        let r = server.execute("import os\ndef main():\n    for i in range(800):\n        os.write(1, b'o' * 65536)\n    return 'still here'\n");
        let body = r.json();
        assert_eq!(body["result"], "still here", "{}", &r.text()[..200.min(r.text().len())]);
        assert_eq!(body["stdout_truncated"], true);
        assert_eq!(body["stdout"].as_str().unwrap().len(), cap);

        // stderr: a flood, then an exception; both capped on the error.
        let r = server.execute("import os, sys\ndef main():\n    for i in range(800):\n        os.write(2, b'e' * 65536)\n        os.write(1, b'o' * 65536)\n    raise ValueError('after the flood')\n");
        let body = assert_error(&r, 400, "runtime_error");
        assert_eq!(
            (body["stdout_truncated"].clone(), body["stderr_truncated"].clone()),
            (json!(true), json!(true))
        );
        assert_eq!(body["stdout"].as_str().unwrap().len(), cap);
        assert_eq!(body["stderr"].as_str().unwrap().len(), cap);

        // A stderr flood from a script that succeeds, with stderr asked for: capped, and the
        // body has only the keys API.md lists for a success.
        let r = common::Client::new(&server).post(&json!({
            "script": "import os\ndef main():\n    for i in range(40):\n        os.write(2, b'e' * 65536)\n    return 1\n",
            "include": ["stderr"],
        }));
        let body = r.json();
        let keys: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["result", "stderr", "stdout"],
            "{}",
            &r.text()[..200.min(r.text().len())]
        );
        assert_eq!(body["stderr"].as_str().unwrap().len(), cap);

        // From child processes, with bytes that are not UTF-8.
        let r = server.execute("import subprocess, sys\ndef main():\n    code = 'import os\\nfor i in range(300): os.write(1, bytes([255]) * 65536); os.write(2, bytes([254]) * 65536)'\n    subprocess.run([sys.executable, '-c', code], check=True)\n    return 'children flooded'\n");
        let body = r.json();
        assert_eq!(body["result"], "children flooded");
        assert_eq!(body["stdout_truncated"], true);
        assert!(body["stdout"].as_str().unwrap().chars().all(|c| c == '\u{fffd}'));

        // A flood that never ends: the time limit ends it, with what was kept.
        let r = timed(
            &server,
            "import os\ndef main():\n    while True:\n        os.write(1, b'x' * 65536)\n",
            0.5,
        );
        let body = assert_error(&r, 400, "timeout");
        assert_eq!(body["stdout_truncated"], true);
        assert_eq!(body["stdout"].as_str().unwrap().len(), cap);
    });
}

#[test]
fn huge_results_are_refused() {
    let server = Server::start_with(&[("MAX_RESULT_BYTES", "1048576")]);
    contained(&server, || {
        for script in [
            "def main():\n    return 'x' * (50 * 1024 * 1024)\n",
            "def main():\n    return list(range(2_000_000))\n",
            "def main():\n    return {str(i): [i] * 10 for i in range(100_000)}\n",
        ] {
            let r = server.execute(script);
            let body = assert_error(&r, 400, "result_too_large");
            assert_eq!(body["limit_bytes"], 1048576, "{body}");
        }
        // Just under the cap is fine.
        let r = server.execute("def main():\n    return 'y' * (1024 * 1024 - 10)\n");
        assert_eq!(r.result().as_str().unwrap().len(), 1024 * 1024 - 10);
    });
}

#[test]
fn file_descriptor_exhaustion_stays_inside() {
    let server = hostile::shared_server();
    contained(&server, || {
        let r = server.execute(
            r#"
import errno, os, socket
def exhaust(make):
    held = []
    try:
        while True:
            held.append(make())
    except OSError as e:
        outcome = [errno.errorcode[e.errno], len(held)]
    for h in held:
        for one in (h if isinstance(h, tuple) else [h]):
            one.close() if hasattr(one, "close") else os.close(one)
    return outcome
def main():
    return {
        "files": exhaust(lambda: os.open("/dev/null", os.O_RDONLY)),
        "sockets": exhaust(lambda: socket.socket()),
        "pipes": exhaust(os.pipe),
        "after": len(os.listdir("/proc/self/fd")),
    }
"#,
        );
        let v = r.result();
        for key in ["files", "sockets", "pipes"] {
            assert_eq!(v[key][0], "EMFILE", "{key}: {v}");
            assert!(v[key][1].as_u64().unwrap() <= 256, "{key}: {v}");
        }
        // Everything could be closed again: back to the few the script started with.
        assert!(v["after"].as_u64().unwrap() < 10, "{v}");
    });
}

#[test]
fn per_user_kernel_counters_cannot_be_drained_from_a_jail() {
    // inotify instances are counted per user up the user-namespace chain, up to the root that
    // created the jail: a jail must not be able to use up the host root's 128.
    let server = hostile::shared_server();
    contained(&server, || {
        std::thread::scope(|scope| {
            let hog = scope.spawn(|| {
                server.execute(
                    "import ctypes, errno, time\nlibc = ctypes.CDLL(None, use_errno=True)\ndef main():\n    held, err = [], None\n    end = time.time() + 2\n    while time.time() < end and len(held) < 1000:\n        fd = libc.inotify_init1(0) if len(held) % 2 else libc.inotify_init()\n        if fd < 0:\n            err = errno.errorcode[ctypes.get_errno()]\n            time.sleep(0.01)\n        else:\n            held.append(fd)\n    return [len(held), err]\n",
                )
            });
            std::thread::sleep(Duration::from_millis(1000));
            // SAFETY: plain syscalls on fds this test owns.
            let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
            assert!(
                fd >= 0,
                "the host's root lost inotify to a jail: {}",
                std::io::Error::last_os_error()
            );
            unsafe { libc::close(fd) };
            // Refused by the seccomp filter (ENOSYS, its answer for every call it refuses).
            assert_eq!(hog.join().unwrap().result(), json!([0, "ENOSYS"]));
        });
    });
}
