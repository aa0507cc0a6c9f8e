//! The zygote strategy (SANDBOX_STRATEGY=zygote, issue 12): what is new about forking jails
//! from a long-lived, pre-imported process. Every other suite runs under it too where the host
//! proves it (the default, `auto`); `make test` runs the contract and hostile suites again under
//! the pool.

use crate::common;
use crate::hostile;

use common::{processes, Proc, Server};
use hostile::{contained, descendants, HostSnapshot};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// A zygote server with the production default: plain and data zygotes ready.
fn zygote_server() -> Server {
    let server = Server::start_with(&[("SANDBOX_STRATEGY", "zygote"), ("WARM_FLAVOURS", "data")]);
    wait_for_zygotes(&server, &["plain", "data"]);
    server
}

/// A zygote server for tests of plain executions only: no data zygote to start.
fn plain_zygote_server() -> Server {
    let server = Server::start_with(&[("SANDBOX_STRATEGY", "zygote"), ("WARM_FLAVOURS", "none")]);
    wait_for_zygotes(&server, &["plain"]);
    server
}

/// Waits until /health says these flavours' zygotes are ready.
fn wait_for_zygotes(server: &Server, flavours: &[&str]) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let health = server.get("/health").json();
        if flavours.iter().all(|f| health["zygotes"][f] == true) {
            return health;
        }
        assert!(Instant::now() < deadline, "zygotes not ready: {health}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The zygotes' Python processes: under the server's nsjail processes, at depth 2.
fn zygotes(server: &Server) -> Vec<Proc> {
    descendants(&processes(), server.pid())
        .into_iter()
        .filter(|(p, depth)| *depth == 2 && p.name.starts_with("python"))
        .map(|(p, _)| p)
        .collect()
}

/// The zygotes once exactly `expected` are seen: a cold jail (also a Python at depth 2) that
/// answered a request a moment ago may still be ending (a pandas interpreter takes a while).
fn settled_zygotes(server: &Server, expected: usize) -> Vec<Proc> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let seen = zygotes(server);
        if seen.len() == expected {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "{} zygotes, not {expected}: {seen:?}",
            seen.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A process's children, from the kernel's own list (one read, where `processes()` reads every
/// process on the host: this runs in a tight loop).
fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|child| child.parse().ok())
        .collect()
}

/// A script returning how many seccomp filters it runs under: nsjail's alone in a jail nsjail
/// started, nsjail's and the child's own in a jail forked from a zygote.
fn served_by_script(imports: &str) -> String {
    format!(
        "{imports}\ndef main():\n    status = dict(l.split(\":\", 1) for l in open(\"/proc/self/status\").read().splitlines())\n    return int(status[\"Seccomp_filters\"])\n"
    )
}

/// Whether a script with these imports was served by a jail forked from a zygote.
fn forked_from_a_zygote(server: &Server, imports: &str) -> bool {
    match result(server, &served_by_script(imports)).as_u64() {
        Some(1) => false,
        Some(n) if n >= 2 => true,
        other => panic!("unexpected seccomp filter count: {other:?}"),
    }
}

fn result(server: &Server, script: &str) -> Value {
    let r = server.execute(script);
    assert_eq!(r.status, 200, "{}", r.text());
    r.result()
}

#[test]
fn health_says_the_zygote_strategy_is_in_force() {
    let server = zygote_server();
    let health = server.get("/health").json();
    assert_eq!(health["strategy"], "zygote", "{health}");
    assert_eq!(zygotes(&server).len(), 2, "one zygote per flavour");
}

#[test]
fn each_execution_is_a_jail_of_its_own_with_the_filter_in_place_before_the_script() {
    let server = plain_zygote_server();
    let script = r#"import ctypes, os, time

def main():
    status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines())
    libc = ctypes.CDLL(None, use_errno=True)
    refused = []
    for name, call in (("unshare", lambda: libc.unshare(0x10000000)),
                       ("mount", lambda: libc.mount(b"none", b"/tmp", b"tmpfs", 0, None)),
                       ("umount", lambda: libc.umount2(b"/tmp", 2))):
        refused.append([name, call(), ctypes.get_errno()])
    return {
        "uid": [os.getuid(), os.getgid()],
        "filters": int(status["Seccomp_filters"]),
        "caps": [status[k].strip() for k in ("CapEff", "CapPrm", "CapBnd")],
        "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        # Only the runner's private working directory (the cwd) is in the fresh /tmp.
        "tmp": [n for n in os.listdir("/tmp") if "/tmp/" + n != os.getcwd()] + os.listdir("/dev/shm"),
        "cwd": os.path.dirname(os.getcwd()),
        "refused": refused,
        "ns": sorted(os.readlink("/proc/self/ns/" + n) for n in ("pid", "net", "mnt", "ipc", "uts", "user", "cgroup")),
        "slept": time.sleep(1.5),
    }
"#;
    // Both alive at once (namespace ids are reused once freed).
    let [first, second] = [0, 1].map(|_| common::post_in_background(server.port, json!({"script": script})));
    let [first, second] = [first, second].map(|r| {
        let r = r.join().unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        r.result()
    });
    for v in [&first, &second] {
        assert_eq!(v["uid"], json!([65534, 65534]), "{v}");
        // nsjail's filter and the child's own, installed before the runner read the script.
        assert!(v["filters"].as_u64().unwrap() >= 2, "{v}");
        assert_eq!(
            v["caps"],
            json!(["0000000000000000", "0000000000000000", "0000000000000000"]),
            "{v}"
        );
        assert_eq!(v["pids"], json!([1, 2]), "{v}");
        assert_eq!(v["tmp"], json!([]), "{v}");
        assert_eq!(v["cwd"], "/tmp", "{v}");
        // Refused by the filter, with nsjail.cfg's errno (ENOSYS since the hardening; EPERM before).
        let errno = v["refused"][0][2].clone();
        assert!(errno == 38 || errno == 1, "{v}");
        assert_eq!(
            v["refused"],
            json!([["unshare", -1, errno], ["mount", -1, errno], ["umount", -1, errno]]),
            "{v}"
        );
    }
    let (a, b): (BTreeSet<String>, BTreeSet<String>) = (
        serde_json::from_value(first["ns"].clone()).unwrap(),
        serde_json::from_value(second["ns"].clone()).unwrap(),
    );
    assert!(a.is_disjoint(&b), "two executions share a namespace: {a:?} {b:?}");
}

#[test]
fn concurrent_children_run_as_host_ids_of_their_own() {
    // Per-user kernel budgets (pending signals, pipe buffers, fds in flight) are shared by
    // processes of one host uid: each execution must be a host uid of its own, never the
    // zygote's (tests/hostile_budgets.rs shows what sharing would cost).
    let server = plain_zygote_server();
    let zygote_uids: BTreeSet<u32> = zygotes(&server).iter().map(|p| p.uid).collect();
    let sleeper = "import time\ndef main():\n    time.sleep(3)\n    return 'slept'\n";
    let seen = std::thread::scope(|scope| {
        let running: Vec<_> = (0..3).map(|_| scope.spawn(|| server.execute(sleeper))).collect();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = BTreeSet::new();
        while Instant::now() < deadline {
            // Depth 3: each child's PID 1 (the runner), reparented to its zygote; depth 4: the
            // script. Once three scripts run, every set-up is over (a child that has just been
            // forked is still the zygote's id until it becomes its own, before any script).
            let tree = descendants(&processes(), server.pid());
            if tree.iter().filter(|(_, depth)| *depth == 4).count() == 3 {
                seen = tree.into_iter().filter(|(_, d)| *d >= 3).map(|(p, _)| p.uid).collect();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for thread in running {
            let answer = thread.join().expect("a client thread panicked");
            assert_eq!(answer.status, 200, "{}", answer.text());
        }
        seen
    });
    assert_eq!(seen.len(), 3, "three concurrent executions, host uids {seen:?}");
    assert!(
        seen.is_disjoint(&zygote_uids),
        "children {seen:?}, zygotes {zygote_uids:?}"
    );
    assert!(
        seen.iter().all(|uid| common::TEST_JAIL_UIDS.contains(uid)),
        "host uids outside the service's range: {seen:?}"
    );
}

#[test]
fn a_child_cannot_signal_trace_or_read_its_zygote() {
    let server = zygote_server();
    let before: Vec<u32> = zygotes(&server).iter().map(|p| p.pid).collect();
    let script = r#"import ctypes, os, signal

def main():
    libc = ctypes.CDLL(None, use_errno=True)
    seen = []
    # Every pid this PID namespace could name: only the runner (1, the script's parent) and
    # the script exist; the zygote is in no namespace the script can name.
    for pid in range(1, 4096):
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
            seen.append(pid)
        except ProcessLookupError:
            pass
        except PermissionError:
            seen.append(pid)
    traced = libc.ptrace(16, 1, None, None), ctypes.get_errno()  # PTRACE_ATTACH to PID 1
    try:
        os.kill(-1, signal.SIGKILL)  # every process it may signal but PID 1 and itself
        killed = "something"
    except ProcessLookupError:
        killed = "nothing"
    return {"seen": seen, "traced": list(traced), "killed": killed}
"#;
    let v = contained(&server, || result(&server, script));
    let errno = v["traced"][1].as_i64().unwrap_or(0);
    assert!(errno == 38 || errno == 1, "ptrace not refused by the filter: {v}");
    assert_eq!(v, json!({"seen": [1], "traced": [-1, errno], "killed": "nothing"}));
    let after: Vec<u32> = zygotes(&server).iter().map(|p| p.pid).collect();
    assert_eq!(before, after, "the zygotes were disturbed");
    let probe = r#"import os, ctypes, signal

def main():
    libc = ctypes.CDLL(None, use_errno=True)
    seen = [pid for pid in range(1, 4096) if pid != os.getpid() and os.path.exists("/proc/%d" % pid)]
    return {"seen": seen, "traced": [libc.ptrace(16, 1, None, None), ctypes.get_errno()]}
"#;
    let v = result(&server, probe);
    assert_eq!(v["seen"], json!([1]), "{v}");
    assert_eq!(v["traced"][0], -1, "{v}");
}

#[test]
fn a_child_cannot_change_what_the_next_child_starts_from() {
    let server = zygote_server();
    let tamper = r#"import json, os, random, sys
import numpy as np
import pandas as pd

def main():
    json.dumps = lambda *a, **k: '"tampered"'
    pd.DataFrame = None
    np.random.seed(1)
    random.seed(1)
    os.environ["TAMPERED"] = "1"
    os.environ["PATH"] = "/tmp"
    open("/tmp/tampered", "w").write("x")
    open("/dev/shm/tampered", "w").write("x")
    sys.modules["collections"].OrderedDict = None
    return "done"
"#;
    assert_eq!(server.execute(tamper).status, 200);
    let check = r#"import json, os, random, sys, collections
import numpy as np
import pandas as pd

def main():
    return {
        "dumps": json.dumps([1]),
        "frame": pd.DataFrame is not None,
        "ordered": collections.OrderedDict is not None,
        "env": sorted(k for k in os.environ if k == "TAMPERED"),
        "path": os.environ["PATH"],
        "tmp": [n for n in os.listdir("/tmp") if "/tmp/" + n != os.getcwd()] + os.listdir("/dev/shm"),
        "seeded": [np.random.RandomState(1).rand() == np.random.rand(), random.Random(1).random() == random.random()],
    }
"#;
    for _ in 0..3 {
        let v = result(&server, check);
        assert_eq!(
            v,
            json!({"dumps": "[1]", "frame": true, "ordered": true, "env": [], "path": "/opt/venv/bin:/usr/local/bin:/usr/bin:/bin",
                   "tmp": [], "seeded": [false, false]}),
        );
    }
}

/// 300 executions rather than the issue's 1 000: each is a real request through the service
/// (about 10-20 ms of CPU apiece on the shared 2-core machine).
#[test]
fn random_generators_are_seeded_afresh_in_every_execution() {
    let server = zygote_server();
    let script = "import random\nimport numpy as np\n\ndef main():\n    return [np.random.rand(), random.random()]\n";
    let mut numpy_values = BTreeSet::new();
    let mut random_values = BTreeSet::new();
    let runs = 300;
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let port = server.port;
            std::thread::spawn(move || {
                (0..runs / 2)
                    .map(|_| {
                        common::post_in_background(port, json!({"script": script}))
                            .join()
                            .unwrap()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for worker in workers {
        for r in worker.join().unwrap() {
            assert_eq!(r.status, 200, "{}", r.text());
            let v = r.result();
            numpy_values.insert(v[0].to_string());
            random_values.insert(v[1].to_string());
        }
    }
    assert_eq!(numpy_values.len(), runs, "np.random.rand() repeated across executions");
    assert_eq!(random_values.len(), runs, "random.random() repeated across executions");
}

#[test]
fn a_dead_zygote_is_replaced_plain_requests_go_cold_meanwhile_and_data_ones_wait_for_it() {
    let server = zygote_server();
    let before = zygotes(&server);
    for zygote in &before {
        // SAFETY: kill(2) on a process of this test's own server.
        unsafe { libc::kill(zygote.pid as i32, libc::SIGKILL) };
    }
    // No request is lost. The first of each flavour finds its zygote gone and starts its
    // replacement: a plain one gets a jail started for it (cheaper than waiting), a pandas one
    // waits for the new zygote (a cold jail would import pandas again).
    assert!(
        !forked_from_a_zygote(&server, ""),
        "a plain request was forked from a dead zygote"
    );
    for _ in 0..3 {
        assert!(
            forked_from_a_zygote(&server, "import pandas\n"),
            "a pandas request did not wait for the new zygote"
        );
        common::assert_serving(&server);
    }
    wait_for_zygotes(&server, &["plain", "data"]);
    let after: BTreeSet<u32> = settled_zygotes(&server, 2).iter().map(|p| p.pid).collect();
    assert!(
        before.iter().all(|p| !after.contains(&p.pid)),
        "the killed zygotes were not replaced"
    );
    let logs = server.raw_logs();
    assert!(
        logs.contains("a zygote is replaced"),
        "the replacement was not logged: {logs}"
    );
}

#[test]
fn a_zygote_killed_from_outside_is_replaced_unasked_and_its_executions_are_not_blamed_on_them() {
    let server = plain_zygote_server();
    let before: BTreeSet<u32> = zygotes(&server).iter().map(|p| p.pid).collect();
    let running = common::post_in_background(
        server.port,
        json!({"script": "import time\ndef main():\n    time.sleep(20)\n"}),
    );
    std::thread::sleep(Duration::from_millis(700));
    for pid in &before {
        // SAFETY: kill(2) on a process of this test's own server.
        unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
    }
    // Its execution died with it: the sandbox's failure, not the script's exit.
    let r = running.join().unwrap();
    assert_eq!((r.status, r.kind()), (503, "unavailable".to_string()), "{}", r.text());
    assert!(
        r.json()["error"].as_str().unwrap().contains("not the script's doing"),
        "{}",
        r.text()
    );
    // No request comes, and still a new zygote starts.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now: Vec<u32> = zygotes(&server).iter().map(|p| p.pid).collect();
        if now.len() == 1 && !before.contains(&now[0]) {
            break;
        }
        assert!(Instant::now() < deadline, "no new zygote: {now:?}, killed {before:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_for_zygotes(&server, &["plain"]);
    assert!(forked_from_a_zygote(&server, ""), "the new zygote does not serve");
}

#[test]
fn a_request_waiting_for_a_zygote_that_fails_to_start_gets_a_cold_jail() {
    let server = plain_zygote_server();
    let plain: BTreeSet<u32> = zygotes(&server).iter().map(|p| p.pid).collect();
    let request = common::post_in_background(server.port, json!({"script": served_by_script("import pandas\n")}));
    // The data zygote this request starts, killed while it imports pandas (hundreds of ms).
    let deadline = Instant::now() + Duration::from_secs(30);
    let starting = loop {
        if let Some(zygote) = zygotes(&server).into_iter().find(|p| !plain.contains(&p.pid)) {
            break zygote;
        }
        assert!(Instant::now() < deadline, "no data zygote started");
        std::thread::sleep(Duration::from_millis(5));
    };
    // SAFETY: kill(2) on a process of this test's own server.
    unsafe { libc::kill(starting.pid as i32, libc::SIGKILL) };
    let r = request.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.result(), json!(1), "not a cold jail (nsjail's filter only)");
    let logs = server.raw_logs();
    assert!(
        logs.contains("cannot start a zygote"),
        "the failed start was not logged: {logs}"
    );
    // Until a start succeeds (the next try comes after a pause of seconds), pandas requests do
    // not wait for one: this one gets a cold jail at once, not the zygote of the next try.
    assert!(
        !forked_from_a_zygote(&server, "import pandas\n"),
        "a request waited for the retry of a failed zygote start"
    );
    common::assert_serving(&server);
}

#[test]
fn children_killed_at_any_point_of_their_set_up_leave_nothing_behind() {
    let server = plain_zygote_server();
    let zygote_pids: BTreeSet<u32> = zygotes(&server).iter().map(|p| p.pid).collect();
    let snapshot = HostSnapshot::take(&server);
    {
        let requests: Vec<_> = (0..12)
            .map(|i| {
                let script = format!("def main():\n    return {i}\n");
                common::post_in_background(server.port, json!({"script": script}))
            })
            .collect();
        // Kill every child of a zygote as soon as it shows up, whatever it is doing, until
        // every request has been answered. A set-up takes milliseconds (the cgroup move alone
        // several): looking every 100 µs still catches children at every step of it, without
        // a busy loop taking a CPU from the server it watches.
        let mut killed = 0;
        while requests.iter().any(|r| !r.is_finished()) {
            for child in zygote_pids.iter().flat_map(|&zygote| children_of(zygote)) {
                // SAFETY: kill(2) on a child of this test server's zygote.
                unsafe { libc::kill(child as i32, libc::SIGKILL) };
                killed += 1;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        for r in requests {
            let r = r.join().unwrap();
            // Killed set-ups fall back to cold jails; a child killed after `ready` ends as a
            // vanished execution, not the script's doing (503, retry). Either way an answer,
            // never a hang.
            assert!(
                r.status == 200 || (r.status, r.kind().as_str()) == (503, "unavailable"),
                "{}",
                r.text()
            );
        }
        assert!(killed > 0, "no child was caught during its set-up");
    }
    snapshot.assert_restored();
    common::assert_serving(&server);
    wait_for_zygotes(&server, &["plain"]);
}

#[test]
fn warm_flavours_decide_which_zygotes_start_with_the_service() {
    // Only plain: no data zygote until a script imports pandas; that script starts it and is
    // answered by it, and so are those that came while it started.
    let server = Server::start_with(&[("SANDBOX_STRATEGY", "zygote"), ("WARM_FLAVOURS", "none")]);
    for _ in 0..2 {
        let health = server.get("/health").json();
        assert_eq!(health["zygotes"]["plain"], true, "{health}");
        assert_eq!(
            (&health["zygotes"]["data"], &health["zygotes_starting"]["data"]),
            (&json!(false), &json!(false)),
            "{health}"
        );
        std::thread::sleep(Duration::from_millis(700));
    }
    assert_eq!(zygotes(&server).len(), 1, "only the plain zygote");
    // Three at once: the first starts the data zygote and all three wait for it, none gets a
    // jail (and an import of pandas) of its own.
    let pandas = served_by_script("import pandas as pd\nassert int(pd.Series([1, 2, 3]).sum()) == 6\n");
    let requests: Vec<_> = (0..3)
        .map(|_| common::post_in_background(server.port, json!({"script": pandas})))
        .collect();
    for r in requests {
        let r = r.join().unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(
            r.result().as_u64().unwrap() >= 2,
            "not forked from the new zygote: {}",
            r.text()
        );
    }
    wait_for_zygotes(&server, &["plain", "data"]);
    settled_zygotes(&server, 2);

    // Charts too: their zygote is ready without a single request.
    let server = Server::start_with(&[("SANDBOX_STRATEGY", "zygote"), ("WARM_FLAVOURS", "data,chart")]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let health = server.get("/health").json();
        if health["zygotes"] == json!({"plain": true, "data": true, "chart": true}) {
            break;
        }
        assert!(Instant::now() < deadline, "the chart zygote never started: {health}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(zygotes(&server).len(), 3);
}
