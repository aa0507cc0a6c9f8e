//! Hostile scripts, family 4: time and signals. Scripts that never end, that refuse to be
//! stopped, that stop themselves, that leave daemons behind or shoot at everything in the
//! jail: each ends in a clear answer within the wall-time limit (or promptly, when `main`
//! returns), nothing survives it, and other clients are served meanwhile.

use crate::common;
use crate::hostile;

use common::{assert_serving, Server};
use hostile::{assert_error, contained, during, HostSnapshot};
use serde_json::json;
use std::time::{Duration, Instant};

const LIMIT: f64 = 2.0;

fn server() -> hostile::SharedServer {
    hostile::shared_server_with(&[("TIMEOUT_SECONDS", "2")])
}

/// Runs a script that must end in the service's time limit: a `timeout` answer within limit + 5 s.
fn times_out(server: &Server, script: &str) -> serde_json::Value {
    times_out_after(LIMIT, server, &json!({ "script": script }))
}

/// [`times_out`] under a limit of half a second that the request asks for: short, so that the
/// scripts that burn a CPU until it burn little, while the bystander's ordinary scripts keep
/// the service's own limit (a loaded machine can hold a hello world up for a second).
fn times_out_in_half_a_second(server: &Server, script: &str) -> serde_json::Value {
    times_out_after(0.5, server, &json!({ "script": script, "timeout_seconds": 0.5 }))
}

fn times_out_after(limit: f64, server: &Server, body: &serde_json::Value) -> serde_json::Value {
    let started = Instant::now();
    let r = server.post_json("/execute", body);
    let took = started.elapsed();
    let body = assert_error(&r, 400, "timeout");
    assert_eq!(body["limit_seconds"], limit, "{body}");
    assert!(
        took < Duration::from_secs_f64(limit + 5.0),
        "a {limit} s limit answered after {took:?}"
    );
    body
}

#[test]
fn the_host_snapshot_sees_a_script_that_is_still_running() {
    // The helper every hostile test relies on must not be vacuous: while a script runs, its
    // process is a "leftover" (depth 3 under the server) and its jail cgroup is busy. With the
    // pool on (this server's default), its jail is also one more process directly under the
    // server than /health accounts for as idle: what a jail that outlived its execution would
    // be. (A zygote's jail is under its zygote: the depth check sees it.)
    let server = server();
    let pooled = server.get("/health").json()["strategy"] == "pool";
    let snapshot = HostSnapshot::take(&server);
    std::thread::scope(|scope| {
        let sleeper = scope.spawn(|| server.execute("import time\ndef main():\n    time.sleep(60)\n"));
        let deadline = Instant::now() + Duration::from_secs(10);
        let seen = loop {
            let problems = snapshot.differences();
            if problems.iter().any(|p| p.contains("leftover process"))
                && problems.iter().any(|p| p.contains("jail cgroup"))
                && (!pooled || problems.iter().any(|p| p.contains("directly under the server")))
            {
                break problems;
            }
            assert!(
                Instant::now() < deadline,
                "the snapshot never saw the running script: {problems:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            seen.iter().all(|p| !p.contains("mount") && !p.contains("/tmp")),
            "{seen:?}"
        );
        assert_error(&sleeper.join().unwrap(), 400, "timeout");
    });
    snapshot.assert_restored();
}

#[test]
fn scripts_that_never_end_time_out() {
    // Enough slots for every script at once (and the bystander): each waits out its own limit
    // at the same time as the others, not after them. A 0.5 s limit: three of them burn a CPU
    // each until it.
    let server = Server::start_with(&[("MAX_CONCURRENT", "12")]);
    contained(&server, || {
        let scripts = [
            "def main():\n    while True:\n        pass\n",
            "import time\ndef main():\n    time.sleep(3600)\n",
            "import signal\ndef main():\n    signal.pause()\n",
            "import threading\ndef main():\n    threading.Event().wait()\n",
            "import os, select\ndef main():\n    r, w = os.pipe()\n    select.select([r], [], [])\n",
            "import os\ndef main():\n    r, w = os.pipe()\n    os.read(r, 1)\n",
            "import asyncio\nasync def main():\n    await asyncio.Event().wait()\n",
            "while True:\n    pass\ndef main():\n    return 1\n",
            "def main():\n    while True:\n        [x * x for x in range(10 ** 6)]\n",
        ];
        std::thread::scope(|scope| {
            let server = &server;
            let running: Vec<_> = scripts
                .into_iter()
                .map(|script| scope.spawn(move || times_out_in_half_a_second(server, script)))
                .collect();
            // A still shorter one is kept too.
            let started = Instant::now();
            let r = server.post_json(
                "/execute",
                &json!({"script": "def main():\n    while True:\n        pass\n", "timeout_seconds": 0.25}),
            );
            let body = assert_error(&r, 400, "timeout");
            assert_eq!(body["limit_seconds"], 0.25);
            assert!(started.elapsed() < Duration::from_secs(5));
            for script in running {
                script.join().unwrap();
            }
        });
    });
}

#[test]
fn ignoring_or_blocking_signals_does_not_help() {
    // A 0.5 s limit: one of them burns a CPU until it.
    let server = server();
    contained(&server, || {
        let scripts = [
            "import signal, time\ndef main():\n    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM, signal.SIGXCPU, signal.SIGPIPE):\n        signal.signal(s, signal.SIG_IGN)\n    while True:\n        time.sleep(0.1)\n",
            "import signal\ndef main():\n    signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())\n    while True:\n        pass\n",
            // A family of processes that all ignore what they can and respawn what dies.
            "import os, signal, time\ndef main():\n    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):\n        signal.signal(s, signal.SIG_IGN)\n    kids = set()\n    while True:\n        while len(kids) < 8:\n            try:\n                pid = os.fork()\n            except OSError:\n                break\n            if pid == 0:\n                os.setsid()\n                while True:\n                    time.sleep(1)\n            kids.add(pid)\n        try:\n            pid, _ = os.waitpid(-1, os.WNOHANG)\n            kids.discard(pid)\n        except ChildProcessError:\n            pass\n        time.sleep(0.05)\n",
        ];
        // At the same time: each waits out its own limit.
        std::thread::scope(|scope| {
            let server = &server;
            for script in scripts {
                scope.spawn(move || times_out_in_half_a_second(server, script));
            }
        });
    });
}

#[test]
fn stopping_itself_or_its_runner_does_not_hang_the_service() {
    let server = server();
    contained(&server, || {
        std::thread::scope(|scope| {
            let server = &server;
            // Its whole process group, main included: stopped processes are still killed.
            scope.spawn(|| times_out(server, "import os, signal\ndef main():\n    if os.fork() == 0:\n        import time\n        time.sleep(60)\n    os.killpg(0, signal.SIGSTOP)\n    return 'resumed'\n"));
            scope.spawn(|| {
                times_out(
                    server,
                    "import os, signal\ndef main():\n    os.kill(os.getpid(), signal.SIGSTOP)\n    return 'resumed'\n",
                )
            });
        });
        // SIGTSTP is discarded: the script's session is an orphaned process group.
        let r = server.execute(
            "import os, signal\ndef main():\n    os.kill(os.getpid(), signal.SIGTSTP)\n    return 'not stopped'\n",
        );
        assert_eq!(r.result(), "not stopped");
        // PID 1 (the runner) ignores every signal it does not handle, SIGSTOP and SIGKILL too,
        // and ignores SIGINT: the script's answer still comes back.
        let r = server.execute(
            "import os, signal, time\ndef main():\n    sent = []\n    for s in (signal.SIGSTOP, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGKILL):\n        os.kill(1, s)\n        sent.append(signal.Signals(s).name)\n    time.sleep(0.3)\n    return sent\n",
        );
        assert_eq!(
            r.result(),
            json!(["SIGSTOP", "SIGTERM", "SIGINT", "SIGHUP", "SIGUSR1", "SIGKILL"])
        );
        // A stopped child left behind does not hold up the answer.
        let r = server.execute("import os, signal\ndef main():\n    pid = os.fork()\n    if pid == 0:\n        os.kill(os.getpid(), signal.SIGSTOP)\n        os._exit(0)\n    os.waitpid(pid, os.WUNTRACED)\n    return 'child stopped'\n");
        assert_eq!(r.result(), "child stopped");
    });
}

#[test]
fn orphans_neither_delay_the_answer_nor_survive() {
    // A 10 s limit: an answer in well under that proves nothing waited for the daemons.
    let server = Server::start_with(&[("TIMEOUT_SECONDS", "10")]);
    let snapshot = HostSnapshot::take(&server);
    let daemon = |body: &str| {
        format!(
            "import os, signal, sys, time\ndef main():\n    pid = os.fork()\n    if pid == 0:\n        os.setsid()\n        if os.fork() == 0:\n            for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):\n                signal.signal(s, signal.SIG_IGN)\n{body}\n        os._exit(0)\n    os.waitpid(pid, 0)\n    print('main done', flush=True)\n    return 'main returned'\n"
        )
    };
    during(&server, || {
        for (what, body) in [
            ("sleeps with stdout open", "            while True:\n                time.sleep(1)"),
            (
                "closes every fd and sleeps",
                "            os.closerange(0, 256)\n            while True:\n                time.sleep(1)",
            ),
            (
                "keeps writing to stdout and stderr",
                "            while True:\n                os.write(1, b'daemon\\n')\n                os.write(2, b'daemon\\n')\n                time.sleep(0.01)",
            ),
            ("burns CPU", "            while True:\n                pass"),
            (
                "keeps forking",
                "            while True:\n                try:\n                    if os.fork() == 0:\n                        time.sleep(60)\n                except OSError:\n                    time.sleep(0.01)",
            ),
        ] {
            let started = Instant::now();
            let r = server.execute(&daemon(body));
            let took = started.elapsed();
            let v = r.json();
            assert_eq!((r.status, &v["result"]), (200, &json!("main returned")), "{what}: {}", r.text());
            assert!(v["stdout"].as_str().unwrap().contains("main done\n"), "{what}: {v}");
            assert!(took < Duration::from_secs(5), "{what}: answered after {took:?}, as if waiting for the daemon");
        }
        // A daemon started as a program in a session of its own.
        let started = Instant::now();
        let r = server.execute("import subprocess\ndef main():\n    subprocess.Popen(['/bin/sleep', '3600'], start_new_session=True, stdout=subprocess.DEVNULL)\n    return 'spawned'\n");
        assert_eq!(r.result(), "spawned");
        assert!(started.elapsed() < Duration::from_secs(5));
    });
    // And none of them outlived its execution.
    assert_serving(&server);
    snapshot.assert_restored();
}

#[test]
fn killing_everything_inside_the_jail_only_hurts_the_script() {
    let server = server();
    contained(&server, || {
        // kill(-1) reaches every process the script may signal but itself and PID 1.
        let r = server.execute(
            "import os, signal, time\ndef main():\n    kids = []\n    for i in range(5):\n        pid = os.fork()\n        if pid == 0:\n            time.sleep(60)\n            os._exit(0)\n        kids.append(pid)\n    os.kill(-1, signal.SIGKILL)\n    return sorted(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in kids)\n",
        );
        assert_eq!(r.result(), json!([-9, -9, -9, -9, -9]));
        // `kill -9 -1` from a shell also reaches the script itself.
        let r = server.execute("import os\ndef main():\n    os.system('kill -9 -1')\n    return 'survived'\n");
        let body = assert_error(&r, 400, "exited");
        assert_eq!(body["signal"], 9, "{body}");
        // Its own process group, with SIGKILL.
        let r = server.execute("import os, signal\ndef main():\n    os.killpg(0, signal.SIGKILL)\n");
        let body = assert_error(&r, 400, "exited");
        assert_eq!(body["signal"], 9, "{body}");
    });
}
