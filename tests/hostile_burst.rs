//! Hostile scripts, all at once: a burst of 50 concurrent requests, hostile and benign mixed.
//! Every one gets its correct answer or a clear JSON error of the kind it deserves (429
//! `overloaded`, with Retry-After, is a clear answer for any of them), the service stays up,
//! and the host is left as it was.

use crate::common;
use crate::hostile;

use common::{assert_serving, Response, Server};
use hostile::HostSnapshot;
use serde_json::{json, Value};
use std::sync::Barrier;

enum Expect {
    /// Exactly this body.
    Answer(Value),
    /// 200 with this result, stdout cut at the cap.
    Truncated(Value),
    /// An error of this kind (and status 400).
    Kind(&'static str),
}

fn request(i: usize) -> (String, Value, Expect) {
    let script = |s: &str| json!({ "script": s });
    // Scripts that only end at the time limit ask for a short one: the burst is about all of
    // them at once, not about how long each burns. The service's own limit is long (10 s) so
    // that a loaded machine cannot turn a memory bomb, starved of CPU, into a timeout.
    let never_ends = |s: &str| json!({ "script": s, "timeout_seconds": 0.25 });
    let (name, body, expect) = match i % 16 {
        0 => (
            "arithmetic",
            script(&format!("def main():\n    print('n =', {i})\n    return {i} * 7\n")),
            Expect::Answer(json!({"result": i * 7, "stdout": format!("n = {i}\n")})),
        ),
        1 => (
            "pandas",
            script(&format!("import pandas as pd\ndef main():\n    return int(pd.Series(range({i})).sum())\n")),
            Expect::Answer(json!({"result": (0..i).sum::<usize>(), "stdout": ""})),
        ),
        2 => (
            "async",
            script(&format!("import asyncio\nasync def main():\n    await asyncio.sleep(0.05)\n    return '{i}'\n")),
            Expect::Answer(json!({"result": i.to_string(), "stdout": ""})),
        ),
        3 => (
            "subprocess",
            script(&format!("import subprocess, sys\ndef main():\n    return subprocess.run([sys.executable, '-c', 'print({i})'], capture_output=True, text=True).stdout\n")),
            Expect::Answer(json!({"result": format!("{i}\n"), "stdout": ""})),
        ),
        4 => ("raises", script("def main():\n    raise ValueError('benign failure')\n"), Expect::Kind("runtime_error")),
        5 => (
            "fork bomb",
            never_ends("import os\ndef main():\n    while True:\n        try:\n            os.fork()\n        except OSError:\n            pass\n"),
            Expect::Kind("timeout"),
        ),
        6 => ("memory bomb", script("def main():\n    x = []\n    while True:\n        x.append(bytearray(16 << 20))\n"), Expect::Kind("memory_limit")),
        7 => ("infinite loop", never_ends("def main():\n    while True:\n        pass\n"), Expect::Kind("timeout")),
        8 => (
            "output flood",
            script("import os\ndef main():\n    for i in range(300):\n        os.write(1, b'z' * 65536)\n    return 'flooded'\n"),
            Expect::Truncated(json!("flooded")),
        ),
        9 => (
            "forged frames",
            script("import os\ndef main():\n    for fd in range(3, 1024):\n        try:\n            os.write(fd, b'ok 2\\n42')\n        except OSError:\n            pass\n    return 1\n"),
            Expect::Kind("result_not_json"),
        ),
        10 => (
            "orphan daemon",
            script("import os, time\ndef main():\n    if os.fork() == 0:\n        os.setsid()\n        if os.fork() == 0:\n            while True:\n                time.sleep(1)\n        os._exit(0)\n    os.wait()\n    return 'left a daemon'\n"),
            Expect::Answer(json!({"result": "left a daemon", "stdout": ""})),
        ),
        11 => (
            "kill everything",
            script("import os, signal, time\ndef main():\n    for i in range(4):\n        if os.fork() == 0:\n            time.sleep(60)\n    os.kill(-1, signal.SIGKILL)\n    return 'alone'\n"),
            Expect::Answer(json!({"result": "alone", "stdout": ""})),
        ),
        12 => ("exits", script("import sys\ndef main():\n    sys.exit(3)\n"), Expect::Kind("exited")),
        13 => ("syntax error", script("def main(:\n    return 1\n"), Expect::Kind("syntax_error")),
        14 => (
            "escape attempt",
            script("import ctypes\nlibc = ctypes.CDLL(None)\ndef main():\n    if libc.unshare(0x10000000) == 0:\n        return 'ESCAPED'\n    raise PermissionError('unshare refused')\n"),
            Expect::Kind("runtime_error"),
        ),
        _ => (
            "network probe",
            script("import socket\ndef main():\n    socket.create_connection(('169.254.169.254', 80), timeout=2)\n    return 'CONNECTED'\n"),
            Expect::Kind("runtime_error"),
        ),
    };
    (format!("#{i} {name}"), body, expect)
}

fn check(label: &str, r: &Response, expect: &Expect) {
    let body: Value = serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("{label}: not JSON ({e}): {} {}", r.status, r.text()));
    if r.status == 429 {
        assert_eq!(body["kind"], "overloaded", "{label}: {body}");
        assert!(r.header("retry-after").is_some(), "{label}: 429 without Retry-After");
        return;
    }
    match expect {
        Expect::Answer(expected) => assert_eq!((r.status, &body), (200, expected), "{label}"),
        Expect::Truncated(result) => {
            assert_eq!(
                (r.status, &body["result"], &body["stdout_truncated"]),
                (200, result, &json!(true)),
                "{label}: {}",
                &r.text()[..200.min(r.text().len())]
            );
            assert_eq!(body["stdout"].as_str().unwrap().len(), 65536, "{label}");
        }
        Expect::Kind(kind) => {
            assert_eq!(
                (r.status, body["kind"].as_str().unwrap_or("")),
                (400, *kind),
                "{label}: {}",
                r.text()
            );
            assert!(
                body["error"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty() && !m.contains('\n')),
                "{label}: {body}"
            );
        }
    }
}

#[test]
fn fifty_mixed_requests_at_once() {
    let server = Server::start_with(&[
        ("TIMEOUT_SECONDS", "10"),
        ("MEMORY_LIMIT_MB", "256"),
        ("MAX_OUTPUT_BYTES", "65536"),
        ("QUEUE_TIMEOUT_SECONDS", "20"),
    ]);
    let snapshot = HostSnapshot::take(&server);
    let requests: Vec<_> = (0..50).map(request).collect();
    let barrier = Barrier::new(requests.len() + 1);
    let answers: Vec<(String, Response)> = std::thread::scope(|scope| {
        let handles: Vec<_> = requests
            .iter()
            .map(|(label, body, _)| {
                let (server, barrier) = (&server, &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    (label.clone(), server.post_json("/execute", body))
                })
            })
            .collect();
        // One more, in the middle of it all: a body that is not JSON.
        barrier.wait();
        let r = server.request(
            "POST",
            "/execute",
            &[("Content-Type", "application/json")],
            b"{\"script\": ",
        );
        assert_eq!((r.status, r.json()["kind"].clone()), (400, json!("invalid_json")));
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut answered = 0;
    for ((label, r), (_, _, expect)) in answers.iter().zip(&requests) {
        check(label, r, expect);
        answered += usize::from(r.status != 429);
    }
    assert!(answered >= 25, "only {answered} of 50 were run at all");
    assert!(!answers
        .iter()
        .any(|(_, r)| r.text().contains("ESCAPED") || r.text().contains("CONNECTED") || r.status >= 500));
    let health = server.get("/health");
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["slots"]["in_use"], 0, "{}", health.text());
    assert_serving(&server);
    snapshot.assert_restored();
}
