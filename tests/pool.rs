//! The pool of warm single-use jails: same isolation as a cold jail, one execution each.

use crate::common;
use common::{assert_serving, Server};
use serde_json::json;
use std::time::{Duration, Instant};

/// Seconds since the jail's PID 1 (the runner) started: how long the jail existed.
const JAIL_AGE: &str = "import os\ndef jail_age():\n    ticks = os.sysconf('SC_CLK_TCK')\n    start = int(open('/proc/1/stat').read().rsplit(')', 1)[1].split()[19]) / ticks\n    return float(open('/proc/uptime').read().split()[0]) - start\n";

/// A server whose jails come from the pool (the pool is what these tests are about; the
/// default strategy on a host that proves zygotes has none), with data jails warm too as in
/// production; `extra` may say otherwise.
fn pool_server(extra: &[(&str, &str)]) -> Server {
    let mut all = vec![("SANDBOX_STRATEGY", "pool"), ("WARM_FLAVOURS", "data")];
    all.extend_from_slice(extra);
    Server::start_with(&all)
}

fn wait_for_ready(server: &Server, flavour: &str, at_least: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if server.get("/health").json()["pool"]["ready"][flavour]
            .as_u64()
            .unwrap_or(0)
            >= at_least
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the pool never had {at_least} {flavour} jail(s) ready");
}

#[test]
fn a_pooled_jail_serves_exactly_one_execution() {
    let server = pool_server(&[("POOL_SIZE", "2"), ("WARM_FLAVOURS", "none")]);
    wait_for_ready(&server, "plain", 1);
    let script = "import os, sys\nseen = []\ndef main():\n    before = sorted(set(os.listdir('/tmp')) - {os.path.basename(os.getcwd())}) + os.listdir('.')\n    open('/tmp/marker', 'w').write('x')\n    open('cwd-marker', 'w').write('x')\n    sys.modules.setdefault('leak', []).append(1)\n    return [before, len(sys.modules['leak']), os.getpid()]\n";
    for _ in 0..5 {
        let result = server.execute(script).result();
        assert_eq!(result[0], json!([]), "a file from an earlier execution is visible");
        assert_eq!(result[1], 1, "module state from an earlier execution is visible");
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn scripts_importing_pandas_get_a_jail_with_it_loaded_and_plain_scripts_do_not() {
    let server = pool_server(&[("POOL_SIZE", "1")]);
    // The first request of a flavour creates demand for it; let both shelves fill.
    server.execute("import pandas\ndef main():\n    return 1\n");
    wait_for_ready(&server, "data", 1);
    wait_for_ready(&server, "plain", 1);
    let r = server.execute("import sys\nPRELOADED = 'pandas' in sys.modules\nimport pandas as pd\ndef main():\n    return [PRELOADED, int(pd.Series([1, 2]).sum())]\n");
    assert_eq!(r.result(), json!([true, 3]));
    let r = server.execute("import sys\ndef main():\n    return 'pandas' in sys.modules or 'numpy' in sys.modules\n");
    assert_eq!(r.result(), json!(false));
}

#[test]
fn warm_flavours_decide_which_jails_wait_before_their_first_request() {
    let server = pool_server(&[("POOL_SIZE", "1"), ("WARM_FLAVOURS", "chart")]);
    wait_for_ready(&server, "plain", 1);
    wait_for_ready(&server, "chart", 1);
    // Data is not warm here: no jail of it is made before a script asks for one.
    let pool = server.get("/health").json()["pool"].clone();
    assert_eq!(
        (&pool["ready"]["data"], &pool["starting"]["data"]),
        (&json!(0), &json!(0)),
        "{pool}"
    );
    let r = server.execute("import pandas as pd\ndef main():\n    return int(pd.Series([4, 5]).sum())\n");
    assert_eq!(r.result(), json!(9));
    // That request made demand: the pool keeps a data jail while it lasts.
    wait_for_ready(&server, "data", 1);
}

#[test]
fn scripts_importing_matplotlib_get_a_jail_with_pyplot_loaded_kept_only_on_demand() {
    let server = pool_server(&[("POOL_SIZE", "1")]);
    wait_for_ready(&server, "plain", 1);
    wait_for_ready(&server, "data", 1);
    // A chart jail is the costliest to keep: none before charts are asked for.
    assert_eq!(server.get("/health").json()["pool"]["ready"]["chart"], json!(0));
    let script = "import sys\nPRELOADED = ['matplotlib.pyplot' in sys.modules, 'pandas' in sys.modules]\nimport matplotlib.pyplot as plt\ndef main():\n    return PRELOADED\n";
    assert_eq!(server.execute(script).result(), json!([true, true]));
    wait_for_ready(&server, "chart", 1);
    assert_eq!(server.execute(script).result(), json!([true, true]));
    // Data scripts that do not draw do not pay for pyplot.
    let r = server.execute("import sys\nimport pandas\ndef main():\n    return 'matplotlib' in sys.modules\n");
    assert_eq!(r.result(), json!(false));
}

#[test]
fn the_time_limit_counts_from_handing_over_the_script() {
    let server = pool_server(&[("POOL_SIZE", "1"), ("TIMEOUT_SECONDS", "3"), ("WARM_FLAVOURS", "none")]);
    wait_for_ready(&server, "plain", 1);
    // The jail has been waiting longer than the time limit; the script itself needs 1.5 s
    // (1.5 s to spare for a loaded machine).
    std::thread::sleep(Duration::from_secs(4));
    let script =
        format!("{JAIL_AGE}import time\ndef main():\n    age = jail_age()\n    time.sleep(1.5)\n    return age\n");
    let r = server.post_json("/execute", &json!({"script": script, "include": ["usage"]}));
    let body = r.json();
    let age = body["result"].as_f64().unwrap();
    assert!(age >= 3.5, "expected a jail from the pool, it was {age} s old");
    // Its usage counts from the hand-over too (a script's own SIGXCPU is told from the time
    // limit's by it).
    let wall_ms = body["usage"]["wall_ms"].as_f64().unwrap();
    assert!(
        (1500.0..3000.0).contains(&wall_ms),
        "wall_ms {wall_ms} for a 1.5 s script"
    );
    let r = server.execute("import time\ndef main():\n    time.sleep(5)\n");
    assert_eq!(r.kind(), "timeout");
}

#[test]
fn jails_that_waited_too_long_are_retired() {
    let server = pool_server(&[
        ("POOL_SIZE", "1"),
        ("POOL_MAX_IDLE_SECONDS", "1"),
        ("WARM_FLAVOURS", "none"),
    ]);
    wait_for_ready(&server, "plain", 1);
    std::thread::sleep(Duration::from_secs(3));
    let script = format!("{JAIL_AGE}def main():\n    return jail_age()\n");
    for _ in 0..3 {
        let age = server.execute(&script).result().as_f64().unwrap();
        // Unretired, it would be over 3 s old; the margin is for a loaded machine.
        assert!(age < 2.5, "a jail {age} s old was used despite a 1 s idle limit");
        std::thread::sleep(Duration::from_millis(700));
    }
}

/// A waiting jail killed from outside (the host's OOM killer, an operator) is noticed while
/// it waits: replaced by a new one, and not counted as ready meanwhile.
#[test]
fn a_waiting_jail_killed_from_outside_is_replaced_without_a_request() {
    let server = pool_server(&[("POOL_SIZE", "1"), ("WARM_FLAVOURS", "none")]);
    wait_for_ready(&server, "plain", 1);
    let killed = common::jail_processes_of(server.pid());
    assert!(!killed.is_empty(), "no jail process found");
    for pid in &killed {
        // SAFETY: kill(2) on a process of this test's own server.
        unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now = common::jail_processes_of(server.pid());
        let ready = server.get("/health").json()["pool"]["ready"]["plain"].as_u64();
        if ready == Some(1) && !now.is_empty() && now.iter().all(|pid| !killed.contains(pid)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the killed jail was not replaced: ready {ready:?}, jail processes {now:?} (killed {killed:?})"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_serving(&server);
}

#[test]
fn pool_size_zero_means_every_execution_starts_cold() {
    let server = pool_server(&[("POOL_SIZE", "0")]);
    let health = server.get("/health").json();
    assert!(health.get("pool").is_none(), "{health}");
    std::thread::sleep(Duration::from_secs(2));
    let script = format!("{JAIL_AGE}def main():\n    return jail_age()\n");
    let age = server.execute(&script).result().as_f64().unwrap();
    // A jail started before the 2 s wait would be older than that.
    assert!(age < 1.8, "a cold jail should be brand new, it was {age} s old");
}

#[test]
fn a_dry_pool_falls_back_to_cold_jails() {
    let server = pool_server(&[("POOL_SIZE", "1"), ("MAX_CONCURRENT", "6"), ("WARM_FLAVOURS", "none")]);
    wait_for_ready(&server, "plain", 1);
    let handles: Vec<_> = (0..6)
        .map(|i| {
            let script = format!("import time\ndef main():\n    time.sleep(0.5)\n    return {i}\n");
            common::post_in_background(server.port, json!({"script": script}))
        })
        .collect();
    let mut results: Vec<i64> = handles
        .into_iter()
        .map(|h| h.join().unwrap().result().as_i64().unwrap())
        .collect();
    results.sort();
    assert_eq!(results, vec![0, 1, 2, 3, 4, 5]);
    assert_serving(&server);
}

#[test]
fn pooled_jails_are_destroyed_at_shutdown() {
    let server = pool_server(&[("POOL_SIZE", "2")]);
    wait_for_ready(&server, "plain", 1);
    let pid = server.pid();
    let status = server.terminate();
    assert!(status.success(), "{status}");
    common::assert_no_jail_left(pid);
}

#[test]
fn output_is_complete_on_every_execution() {
    let server = pool_server(&[("POOL_SIZE", "2"), ("WARM_FLAVOURS", "none")]);
    wait_for_ready(&server, "plain", 1);
    for i in 0..25 {
        let r = server.execute(&format!("def main():\n    print('hi {i}')\n    return {i}\n"));
        assert_eq!(
            r.json(),
            json!({"result": i, "stdout": format!("hi {i}\n")}),
            "execution {i}"
        );
        let r = server.execute("import sys\ndef main():\n    sys.stdout.write('x' * 200000)\n    return 1\n");
        assert_eq!(r.json()["stdout"].as_str().map(str::len), Some(200000), "execution {i}");
    }
}

/// `cpu.shares` of the service's jail cgroups (cgroup v1's cpu hierarchy, as on this host).
fn jail_cpu_shares(server: &Server) -> Vec<u64> {
    let parents = common::service_cgroups(server.pid());
    let cpu_parent = parents
        .iter()
        .find(|p| p.join("cpu.shares").exists())
        .expect("the service's cgroup in the cpu hierarchy");
    let mut shares = Vec::new();
    for entry in std::fs::read_dir(cpu_parent).unwrap().flatten() {
        if entry.file_name().to_string_lossy().starts_with("jail-") {
            if let Ok(text) = std::fs::read_to_string(entry.path().join("cpu.shares")) {
                shares.push(text.trim().parse().unwrap());
            }
        }
    }
    shares
}

#[test]
fn waiting_jails_get_cpu_only_when_requests_leave_some() {
    let server = pool_server(&[("POOL_SIZE", "2")]);
    wait_for_ready(&server, "plain", 1);
    std::thread::sleep(Duration::from_millis(300));
    let idle = jail_cpu_shares(&server);
    assert!(
        !idle.is_empty() && idle.iter().all(|&s| s == 2),
        "idle pooled jails: {idle:?}"
    );
    let running = common::post_in_background(
        server.port,
        json!({"script": "import time\ndef main():\n    time.sleep(1.5)\n    return 'ran'\n"}),
    );
    std::thread::sleep(Duration::from_millis(600));
    let during = jail_cpu_shares(&server);
    assert!(
        during.contains(&1024),
        "the jail serving a request should have the normal weight: {during:?}"
    );
    assert_eq!(running.join().unwrap().result(), json!("ran"));
}
