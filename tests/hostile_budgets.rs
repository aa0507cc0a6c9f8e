//! Hostile scripts, family 7: per-user kernel budgets. The kernel keeps some budgets per host
//! user (pipe buffer pages, file descriptors in flight over Unix sockets) and some per user up
//! the user-namespace chain (pending signals, charged to the jail's uid and to whoever created
//! its namespace). One execution that exhausts a budget must not change what a concurrent
//! execution, or the host, gets: every jail runs as a host uid of its own and may queue only a
//! few signals.
//!
//! Each test runs a "hog" that fills a budget, renames itself `budget-full` (visible to the
//! host in /proc) and holds on; while it holds, a second execution and the host use the
//! same budget.

use crate::common;
use crate::hostile;

use common::{processes, Server};
use hostile::{contained, descendants};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// How long a hog holds its budget at most: the test lets it go (SIGUSR1) once the other
/// execution and the host have had their turn.
const HOLD_SECONDS: u64 = 25;

fn server() -> hostile::SharedServer {
    hostile::shared_server_with(&[("MAX_CONCURRENT", "4"), ("TIMEOUT_SECONDS", "30")])
}

/// The hog's script: `fill` (Python statements in `main`, leaving a JSON-able `result`) runs,
/// then the process renames itself and holds until SIGUSR1 (or HOLD_SECONDS).
fn hog(fill: &str) -> String {
    format!(
        "import ctypes, errno, fcntl, os, resource, signal, socket, time\nlibc = ctypes.CDLL(None, use_errno=True)\ndef main():\n{fill}\n    signal.pthread_sigmask(signal.SIG_BLOCK, {{signal.SIGUSR1}})\n    libc.prctl(15, b'budget-full', 0, 0, 0)\n    signal.sigtimedwait({{signal.SIGUSR1}}, {HOLD_SECONDS})\n    return result\n"
    )
}

/// Runs the hog in the background, waits until it holds its budget, runs `meanwhile`, then
/// returns the hog's answer and what `meanwhile` returned.
fn while_a_hog_holds<R>(server: &Server, fill: &str, meanwhile: impl FnOnce() -> R) -> (Value, R) {
    let hog = common::post_in_background(server.port, json!({ "script": hog(fill) }));
    let deadline = Instant::now() + Duration::from_secs(25);
    // This server's hog only: other tests run hogs of their own at the same time.
    let hog_pid = loop {
        let holding = descendants(&processes(), server.pid())
            .into_iter()
            .find(|(p, _)| p.name == "budget-full");
        if let Some((p, _)) = holding {
            break p.pid;
        }
        assert!(
            Instant::now() < deadline && !hog.is_finished(),
            "the hog never filled its budget"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let outcome = meanwhile();
    // SAFETY: kill(2) on a pid; at worst the hog already ended and the pid is gone.
    unsafe { libc::kill(hog_pid as i32, libc::SIGUSR1) };
    let answer = hog.join().expect("the hog's request");
    (answer.result(), outcome)
}

#[test]
fn pending_signals_of_one_execution_leave_others_and_the_host_theirs() {
    let server = server();
    contained(&server, || {
        // Queue real-time signals to itself, blocked, until the kernel says no.
        let fill = "    sig = signal.SIGRTMIN\n    signal.pthread_sigmask(signal.SIG_BLOCK, {sig})\n    libc.sigqueue.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p]\n    queued, err = 0, None\n    while queued < 200000:\n        if libc.sigqueue(os.getpid(), sig, None) != 0:\n            err = errno.errorcode[ctypes.get_errno()]\n            break\n        queued += 1\n    result = [queued, err, resource.getrlimit(resource.RLIMIT_SIGPENDING)[0]]";
        let (hog, (other, host)) = while_a_hog_holds(&server, fill, || {
            let other = server.execute(
                "import errno, signal, threading\ndef main():\n    sig = signal.SIGRTMIN\n    signal.pthread_sigmask(signal.SIG_BLOCK, {sig})\n    out = []\n    for i in range(8):\n        try:\n            signal.pthread_kill(threading.get_ident(), sig)\n            out.append('OK')\n        except OSError as e:\n            out.append(errno.errorcode[e.errno])\n    return [out, sig in signal.sigpending()]\n",
            );
            // The host's root (this test runs as the service's user) can still make a timer,
            // which needs a queued signal of its own.
            // SAFETY: timer_create/timer_delete on zeroed, owned structures.
            let host = unsafe {
                let mut event: libc::sigevent = std::mem::zeroed();
                event.sigev_notify = libc::SIGEV_SIGNAL;
                event.sigev_signo = libc::SIGRTMIN();
                let mut timer: libc::timer_t = std::mem::zeroed();
                if libc::timer_create(libc::CLOCK_MONOTONIC, &mut event, &mut timer) == 0 {
                    libc::timer_delete(timer);
                    "OK".to_string()
                } else {
                    std::io::Error::last_os_error().to_string()
                }
            };
            (other, host)
        });
        assert_eq!(
            other.result(),
            json!([["OK", "OK", "OK", "OK", "OK", "OK", "OK", "OK"], true]),
            "a concurrent execution lost its signals to the hog ({hog})"
        );
        assert_eq!(host, "OK", "the host lost its signals to the hog ({hog})");
        // The hog ran into its own small limit.
        let limit = hog[2].as_u64().unwrap_or(u64::MAX);
        assert!(limit <= 1024, "RLIMIT_SIGPENDING in the jail: {hog}");
        assert_eq!(hog[1], "EAGAIN", "{hog}");
        assert!(hog[0].as_u64().unwrap_or(u64::MAX) <= limit, "{hog}");
    });
}

#[test]
fn pipe_buffers_of_one_execution_leave_others_theirs() {
    let server = server();
    contained(&server, || {
        // Grow pipes to 1 MiB each until the per-user soft limit (16384 pages by default) is
        // passed: from then on this user's new pipes get 8 KiB instead of 64 KiB.
        let fill = "    held, pages = [], 0\n    while len(held) < 100:\n        r, w = os.pipe()\n        held.append((r, w))\n        try:\n            pages += fcntl.fcntl(w, 1031, 1 << 20) // 4096\n        except OSError:\n            pages += 16\n    r, w = os.pipe()\n    result = [len(held), pages, fcntl.fcntl(w, 1032)]";
        let (hog, other) = while_a_hog_holds(&server, fill, || {
            server.execute(
                "import fcntl, os, subprocess\ndef main():\n    r, w = os.pipe()\n    size = fcntl.fcntl(w, 1032)\n    p = subprocess.Popen(['head', '-c', '20000', '/dev/zero'], stdout=subprocess.PIPE)\n    try:\n        code = p.wait(timeout=5)\n    except subprocess.TimeoutExpired:\n        p.kill()\n        code = 'hung'\n    return [size, code, len(p.stdout.read())]\n",
            )
        });
        assert_eq!(
            other.result(),
            json!([65536, 0, 20000]),
            "a concurrent execution's pipes shrank ({hog})"
        );
        // The hog did exhaust its own budget: its last pipe is small.
        assert!(hog[1].as_u64().unwrap_or(0) > 16384, "{hog}");
        assert_eq!(hog[2], 8192, "{hog}");
    });
}

#[test]
fn file_descriptors_in_flight_of_one_execution_leave_others_theirs() {
    let server = server();
    contained(&server, || {
        // Send file descriptors over a Unix socket and never receive them, until the kernel
        // refuses (more in flight than RLIMIT_NOFILE for this user).
        let fill = "    a, b = socket.socketpair()\n    a.setblocking(False)\n    fd = os.open('/dev/null', os.O_RDONLY)\n    sent, err = 0, None\n    while sent < 500:\n        try:\n            socket.send_fds(a, [b'x'], [fd] * 50)\n            sent += 50\n        except OSError as e:\n            err = errno.errorcode[e.errno]\n            break\n    result = [sent, err]";
        let (hog, other) = while_a_hog_holds(&server, fill, || {
            server.execute(
                "import errno, os, socket\ndef main():\n    a, b = socket.socketpair()\n    fd = os.open('/dev/null', os.O_RDONLY)\n    try:\n        socket.send_fds(a, [b'x'], [fd])\n    except OSError as e:\n        return errno.errorcode[e.errno]\n    msg, fds, flags, addr = socket.recv_fds(b, 1, 1)\n    return [msg.decode(), len(fds)]\n",
            )
        });
        assert_eq!(
            other.result(),
            json!(["x", 1]),
            "a concurrent execution could not pass a file descriptor ({hog})"
        );
        assert_eq!(hog[1], "ETOOMANYREFS", "{hog}");
    });
}
