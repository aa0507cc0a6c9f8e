//! Start-up, the isolation probe and its fallbacks, failing closed, and shutdown.

use crate::common;
use common::{assert_serving, Server};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[test]
fn a_bad_setting_stops_start_up_naming_the_variable() {
    for (var, value) in [
        ("PORT", "eighty"),
        ("TIMEOUT_SECONDS", "-1"),
        ("MEMORY_LIMIT_MB", "lots"),
        ("MAX_CONCURRENT", "0"),
        // More jails than the service has host ids for (1024 from JAIL_UID_BASE).
        ("MAX_CONCURRENT", "2000"),
        ("SANDBOX_CGROUP", "v9"),
        ("POOL_SIZE", "-3"),
        ("POOL_SIZE", "1000"),
        ("JAIL_UID_BASE", "4294967295"),
        ("NSJAIL_PATH", "/nonexistent/nsjail"),
        ("NSJAIL_CONFIG", ""),
        ("SANDBOX_PYTHON", "/nonexistent/python3"),
        ("NSJAIL_PATH", "/usr/bin"),
        ("NSJAIL_PATH", "/etc/passwd"),
        ("NSJAIL_CONFIG", "/etc"),
        ("SANDBOX_PYTHON", "/etc/passwd"),
        ("API_TOKEN", "secret\n"),
    ] {
        let err = Server::try_start(&[(var, value)])
            .err()
            .unwrap_or_else(|| panic!("{var}={value} started"));
        assert!(err.contains("exited with exit status: 2"), "{var}: {err}");
        assert!(err.contains(var), "the message should name {var}: {err}");
    }
}

#[test]
fn no_working_sandbox_means_no_service() {
    // nsjail there but not working (a missing one is a bad setting, above).
    let err = Server::try_start(&[("NSJAIL_PATH", "/bin/false")])
        .err()
        .expect("started with an nsjail that does nothing");
    assert!(err.contains("refusing to start"), "{err}");
    assert!(err.contains("exited with exit status: 1"), "{err}");
    assert!(err.contains("NSJAIL_PATH=/bin/false"), "what the probe ran: {err}");
    // A config nsjail rejects: the probe fails, and the service does not fall back to running
    // anything without it.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("nsjail.cfg");
    std::fs::write(&broken, "this is not a valid nsjail config {").unwrap();
    let err = Server::try_start(&[("NSJAIL_CONFIG", broken.to_str().unwrap())])
        .err()
        .expect("started with a broken config");
    assert!(err.contains("refusing to start"), "{err}");
    assert!(err.contains("exited with exit status: 1"), "{err}");
}

#[test]
fn a_forced_isolation_that_does_not_work_is_not_replaced_by_a_weaker_one() {
    // This machine has no cgroup v2 controllers: forcing v2 must fail, not fall back to v1.
    let err = Server::try_start(&[("SANDBOX_CGROUP", "v2")])
        .err()
        .expect("started with v2 forced on a v1 host");
    assert!(err.contains("refusing to start") && err.contains("cgroup v2"), "{err}");
}

/// Every configuration the probe can choose on this host runs scripts with its limits.
#[test]
fn each_fallback_configuration_works_when_forced() {
    // The four at the same time, each its own server.
    std::thread::scope(|scope| {
        for (userns, cgroup) in [("on", "v1"), ("off", "v1"), ("on", "none"), ("off", "none")] {
            scope.spawn(move || a_forced_configuration_works(userns, cgroup));
        }
    });
}

fn a_forced_configuration_works(userns: &str, cgroup: &str) {
    let server = Server::start_with(&[
        ("SANDBOX_USERNS", userns),
        ("SANDBOX_CGROUP", cgroup),
        ("MEMORY_LIMIT_MB", "200"),
        ("TIMEOUT_SECONDS", "3"),
    ]);
    let label = format!("userns={userns} cgroup={cgroup}");
    let health = server.get("/health").json();
    assert_eq!(
        health["isolation"]["user_namespace"],
        userns == "on",
        "{label}: {health}"
    );
    let expected_cgroup = if cgroup == "none" { json!(null) } else { json!(cgroup) };
    assert_eq!(health["isolation"]["cgroup"], expected_cgroup, "{label}: {health}");

    let r = server.execute("import os, socket\ndef main():\n    try:\n        socket.create_connection(('1.1.1.1', 53), timeout=1)\n        net = True\n    except OSError:\n        net = False\n    return [os.getuid(), os.getgid(), net, sorted(os.listdir('/'))]\n");
    // 65534 inside a user namespace; without one, the jail's own host uid and gid.
    let uid = r.result()[0].as_u64().unwrap_or(0) as u32;
    if userns == "off" {
        // /health gives the first of the server's own range.
        let base = health["isolation"]["uid"].as_u64().unwrap_or(0) as u32;
        let range = base..base + python_executor::jail::ids::RANGE;
        assert!(range.contains(&uid), "{label}: {}", r.text());
    }
    let inside = if userns == "on" { 65534 } else { uid };
    assert_eq!(
        r.result(),
        json!([
            inside,
            inside,
            false,
            ["bin", "dev", "etc", "lib", "lib64", "opt", "proc", "tmp", "usr"]
        ]),
        "{label}"
    );
    let r = server.execute("def main():\n    return len(bytearray(300 * 1024 * 1024))\n");
    assert_eq!(r.kind(), "memory_limit", "{label}: {}", r.text());
    let r = server.execute("import os, time\ndef main():\n    n = 0\n    try:\n        for _ in range(500):\n            if os.fork() == 0:\n                time.sleep(30)\n                os._exit(0)\n            n += 1\n    except OSError:\n        pass\n    return n\n");
    let forked = r.result().as_i64().unwrap();
    assert!(forked < 500, "{label}: {forked} processes were allowed");
    // A limit the request lowers (the service's is 3 s): the time limit is in force.
    let r = server.post_json(
        "/execute",
        &json!({"script": "while True:\n    pass\ndef main():\n    pass\n", "timeout_seconds": 0.5}),
    );
    assert_eq!(r.kind(), "timeout", "{label}");
    assert_serving(&server);
}

#[test]
fn sigterm_lets_running_executions_finish_then_exits_zero() {
    let server = Server::start();
    let port = server.port;
    let slow = common::post_in_background(
        port,
        json!({"script": "import time\ndef main():\n    time.sleep(2)\n    return 'finished'\n"}),
    );
    std::thread::sleep(Duration::from_millis(700));
    let pid = server.pid();
    let started = Instant::now();
    let status = server.terminate();
    assert!(status.success(), "exit status {status}");
    let response = slow.join().unwrap();
    assert_eq!(response.result(), json!("finished"));
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "shutdown took {:?}",
        started.elapsed()
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "still accepting after shutdown"
    );
    common::assert_no_jail_left(pid);
}

#[test]
fn shutdown_does_not_wait_past_its_grace_period() {
    let server = Server::start_with(&[
        ("SHUTDOWN_GRACE_SECONDS", "1"),
        ("TIMEOUT_SECONDS", "30"),
        ("MAX_CONCURRENT", "1"),
    ]);
    let running = common::post_in_background(
        server.port,
        json!({"script": "import time\ndef main():\n    print('started', flush=True)\n    time.sleep(25)\n"}),
    );
    std::thread::sleep(Duration::from_millis(300));
    let queued = common::post_in_background(
        server.port,
        json!({"script": "def main():\n    print('ran')\n    return 1\n"}),
    );
    std::thread::sleep(Duration::from_millis(700));
    let pid = server.pid();
    let logs = server.logs.clone();
    let started = Instant::now();
    let status = server.terminate();
    assert!(status.success(), "{status}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "took {:?}",
        started.elapsed()
    );
    // Not started: refused at once, nothing ran. Still running when the grace ran out:
    // stopped, and said so, not blamed on the script.
    let queued = queued.join().unwrap();
    assert_eq!(
        (queued.status, queued.kind()),
        (503, "unavailable".to_string()),
        "{}",
        queued.text()
    );
    assert!(queued.json().get("stdout").is_none(), "{}", queued.text());
    let running = running.join().unwrap();
    assert_eq!(
        (running.status, running.kind()),
        (503, "unavailable".to_string()),
        "{}",
        running.text()
    );
    let body = running.json();
    assert!(body["error"].as_str().unwrap().contains("shutting down"), "{body}");
    // It had started: what it printed and what it cost come with the answer, as with any
    // error after the start.
    assert_eq!(body["stdout"], "started\n", "{body}");
    assert_eq!(body["stderr"], "", "{body}");
    assert!(body["usage"]["wall_ms"].as_f64().unwrap() > 500.0, "{body}");
    // Refusals the service meant: warnings, not errors (Cloud Logging alerts on errors).
    let refusals: Vec<Value> = logged(&logs)
        .into_iter()
        .filter(|line| line["message"] == "request" && line["status"] == 503)
        .collect();
    assert_eq!(refusals.len(), 2, "{refusals:?}");
    assert!(
        refusals.iter().all(|line| line["severity"] == "WARNING"),
        "{refusals:?}"
    );
    std::thread::sleep(Duration::from_millis(300));
    common::assert_no_jail_left(pid);
}

/// SIGTERM while the service is still starting (its probe under way, its cgroups made): it
/// stops as it does once started, exit code 0 and no cgroup left, rather than dying halfway
/// by the signal's default action.
#[test]
fn sigterm_during_start_up_stops_the_service_cleanly() {
    let mut child = Server::command(&[])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the service");
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    while common::service_cgroups(pid).is_empty() {
        assert!(Instant::now() < deadline, "the service made no cgroup");
        std::thread::sleep(Duration::from_millis(2));
    }
    // SAFETY: kill(2) on this test's own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the service") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the service did not stop within 30 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    assert_eq!(common::service_cgroups(pid), Vec::<std::path::PathBuf>::new());
    common::assert_no_jail_left(pid);
}

/// A shutdown is no fault: zygotes still starting (as the warm flavours' are just after
/// start-up) are let go without an error logged.
#[test]
fn a_shutdown_right_after_start_up_logs_no_error() {
    // Zygotes (auto, here) or pooled jails still starting when SIGTERM comes.
    for strategy in ["auto", "pool"] {
        let server = Server::start_with(&[("WARM_FLAVOURS", "data,chart"), ("SANDBOX_STRATEGY", strategy)]);
        let logs = server.logs.clone();
        let status = server.terminate();
        assert!(status.success(), "{strategy}: {status}");
        let lines = logged(&logs);
        assert!(
            lines.iter().any(|line| line["message"] == "stopped"),
            "{strategy}: {lines:?}"
        );
        let errors: Vec<&Value> = lines.iter().filter(|line| line["severity"] == "ERROR").collect();
        assert!(errors.is_empty(), "{strategy}: {errors:?}");
    }
}

/// The JSON lines a stopped server logged, up to its last ("stopped"): they are read from its
/// stdout by a thread of their own, which may still be reading when the process is gone.
fn logged(logs: &std::sync::Mutex<Vec<String>>) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines: Vec<Value> = logs
            .lock()
            .unwrap()
            .iter()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect();
        if lines.iter().any(|line| line["message"] == "stopped") || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn start_up_logs_the_isolation_in_force() {
    let server = Server::start();
    let lines = server.log_lines();
    let ready = lines
        .iter()
        .find(|l| l["message"] == "sandbox ready")
        .expect("no 'sandbox ready' line");
    assert_eq!(ready["severity"], "INFO");
    assert!(ready["isolation"].as_str().unwrap().contains("cgroup v1"), "{ready}");
    assert!(ready["python"].as_str().unwrap().starts_with("3.11"));
}
