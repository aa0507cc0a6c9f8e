//! The HTTP contract (../shared/API.md), case by case, against the real service.

use crate::common;
use common::{assert_serving, Server};
use serde_json::json;
use std::io::{Read, Write};

const SEED_PANDAS: &str = r#"import pandas as pd
import numpy as np

def main():
    print("Analyzing...")
    df = pd.DataFrame({"x": np.arange(1, 8), "y": np.arange(1, 8) * 2})
    total = int(df["x"].sum() + df["y"].sum())
    return {"status": "success", "value": total // 2 - 0}
"#;

#[test]
fn the_seed_example_byte_for_byte() {
    let server = Server::shared();
    let r = server.execute(SEED_PANDAS);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.text(),
        r#"{"result":{"status": "success", "value": 42},"stdout":"Analyzing...\n"}"#
    );
    assert_eq!(
        r.json(),
        json!({"result": {"status": "success", "value": 42}, "stdout": "Analyzing...\n"})
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
}

#[test]
fn every_result_type() {
    let server = Server::shared();
    let cases = [
        (
            "{'a': [1, 2], 'b': {'c': None}}",
            json!({"a": [1, 2], "b": {"c": null}}),
        ),
        ("[1, 'two', 3.5]", json!([1, "two", 3.5])),
        ("'text'", json!("text")),
        ("7", json!(7)),
        ("-2.25", json!(-2.25)),
        ("True", json!(true)),
        ("False", json!(false)),
        ("None", json!(null)),
        ("(1, 2)", json!([1, 2])),
        ("{}", json!({})),
        ("[]", json!([])),
        ("''", json!("")),
        (
            "{1: 'int keys become strings'}",
            json!({"1": "int keys become strings"}),
        ),
    ];
    for (expr, expected) in cases {
        let r = server.execute(&format!("def main():\n    return {expr}\n"));
        assert_eq!(r.result(), expected, "main() returning {expr}");
        assert_eq!(
            r.json().as_object().unwrap().len(),
            2,
            "exactly result and stdout: {}",
            r.text()
        );
    }
}

#[test]
fn big_integers_and_float_digits_survive_unchanged() {
    let server = Server::shared();
    let r = server.execute("def main():\n    return [2**200, 0.1, 1e300, 1/3, -0.0, 12345678901234567890]\n");
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(
        text.contains("1606938044258990275541962092341162602522202993782792835301376"),
        "{text}"
    );
    assert!(text.contains("0.3333333333333333"), "{text}");
    assert!(text.contains("1e+300"), "{text}");
    assert!(text.contains("-0.0"), "{text}");
    assert!(text.contains("12345678901234567890"), "{text}");
}

#[test]
fn prints_at_module_level_and_in_main_come_in_order() {
    let server = Server::shared();
    let script = "print('one')\nimport sys\nsys.stdout.write('two\\n')\ndef main():\n    print('three', end='')\n    print()\n    print('four\\n\\n')\n    return 1\nprint('module end')\n";
    let r = server.execute(script);
    assert_eq!(
        r.json(),
        json!({"result": 1, "stdout": "one\ntwo\nmodule end\nthree\nfour\n\n\n"})
    );
}

#[test]
fn output_of_child_processes_is_captured() {
    let server = Server::shared();
    let script = "import os, subprocess, sys\ndef main():\n    print('parent', flush=True)\n    subprocess.run([sys.executable, '-c', 'print(\"child\")'])\n    os.system('echo shell') if os.path.exists('/bin/sh') else print('shell')\n    return 0\n";
    let r = server.execute(script);
    assert_eq!(r.result(), json!(0));
    assert_eq!(r.json()["stdout"], "parent\nchild\nshell\n");
}

#[test]
fn unicode_round_trips() {
    let server = Server::shared();
    let r = server
        .execute("def main():\n    print('héllo wörld ✓ 日本 🎉')\n    return {'ключ': 'значение', 'emoji': '🐍'}\n");
    assert_eq!(
        r.json(),
        json!({"result": {"ключ": "значение", "emoji": "🐍"}, "stdout": "héllo wörld ✓ 日本 🎉\n"})
    );
}

#[test]
fn invalid_utf8_output_is_replaced_not_fatal() {
    let server = Server::shared();
    let r =
        server.execute("import sys\ndef main():\n    sys.stdout.buffer.write(b'ok \\xff\\xfe end\\n')\n    return 1\n");
    assert_eq!(r.json(), json!({"result": 1, "stdout": "ok \u{fffd}\u{fffd} end\n"}));
}

#[test]
fn stderr_is_kept_out_of_stdout() {
    let server = Server::shared();
    let r = server.execute("import sys\ndef main():\n    print('out')\n    print('err', file=sys.stderr)\n    import warnings\n    warnings.warn('careful')\n    return 'done'\n");
    assert_eq!(r.json(), json!({"result": "done", "stdout": "out\n"}));
}

#[test]
fn module_is_not_main_and_main_runs_once() {
    let server = Server::shared();
    let script = "calls = []\ndef main():\n    calls.append(1)\n    return [__name__ != '__main__', len(calls)]\nif __name__ == '__main__':\n    main()\n";
    assert_eq!(server.execute(script).result(), json!([true, 1]));
}

#[test]
fn async_main_is_awaited() {
    let server = Server::shared();
    let script = "import asyncio\nasync def main():\n    await asyncio.sleep(0.01)\n    return 'awaited'\n";
    assert_eq!(server.execute(script).result(), json!("awaited"));
}

#[test]
fn os_works_and_tmp_is_writable() {
    let server = Server::shared();
    let script = "import os, tempfile\ndef main():\n    p = os.path.join(tempfile.gettempdir(), 'x.txt')\n    with open(p, 'w') as f:\n        f.write('data')\n    open('here.txt', 'w').write('cwd')\n    cwd = os.getcwd()\n    return [os.path.dirname(cwd), open(p).read(), sorted(os.listdir('/tmp')) == sorted(['x.txt', os.path.basename(cwd)]), os.listdir('.'), os.cpu_count() > 0]\n";
    assert_eq!(
        server.execute(script).result(),
        json!(["/tmp", "data", true, ["here.txt"], true])
    );
}

#[test]
fn numpy_and_pandas_work() {
    let server = Server::shared();
    let script = "import numpy as np\nimport pandas as pd\ndef main():\n    a = np.linalg.inv(np.array([[2.0, 0.0], [0.0, 4.0]]))\n    df = pd.DataFrame({'g': ['a', 'b', 'a'], 'v': [1, 2, 3]})\n    return {'inv': a.tolist(), 'groups': df.groupby('g')['v'].sum().to_dict(), 'csv': df.to_csv(index=False)}\n";
    assert_eq!(
        server.execute(script).result(),
        json!({"inv": [[0.5, 0.0], [0.0, 0.25]], "groups": {"a": 4, "b": 2}, "csv": "g,v\na,1\nb,2\na,3\n"})
    );
}

#[test]
fn syntax_error_is_400_with_line_and_column() {
    let server = Server::shared();
    let r = server.execute("def main():\n    return 1 +\n");
    assert_eq!(r.status, 400);
    let body = r.json();
    assert_eq!(body["kind"], "syntax_error");
    assert_eq!(body["line"], 2);
    assert!(body["column"].as_u64().unwrap() >= 1);
    assert!(body["error"].as_str().unwrap().contains("SyntaxError"));
    // What only CPython's compiler checks is refused in the sandbox, before the module runs:
    // the same answer, where CPython puts it, and nothing of an execution (no output, usage).
    for (script, message, line, column) in [
        (
            "print('ran')\nreturn 5\ndef main():\n    pass\n",
            "'return' outside function",
            2,
            1,
        ),
        ("def main():\n    break\n", "'break' outside loop", 2, 5),
        (
            "def main():\n    x = 1\n    global x\n",
            "name 'x' is assigned to before global declaration",
            3,
            5,
        ),
    ] {
        let body = server.execute(script).json();
        let expected = format!("SyntaxError: {message} (line {line}, column {column})");
        assert_eq!(
            body,
            json!({"error": expected, "kind": "syntax_error", "line": line, "column": column}),
            "{script}"
        );
    }
    assert_serving(&server);
}

#[test]
fn missing_main_is_400() {
    let server = Server::shared();
    for script in ["x = 1\n", "def helper():\n    pass\n", "class main:\n    pass\n"] {
        let r = server.execute(script);
        assert_eq!((r.status, r.kind().as_str()), (400, "missing_main"), "{script}");
    }
    // Defined, but not callable by the time it is called.
    let r = server.execute("def main():\n    return 1\nmain = 5\n");
    assert_eq!((r.status, r.kind().as_str()), (400, "missing_main"));
    assert_serving(&server);
}

#[test]
fn runtime_error_has_exception_and_a_clean_traceback() {
    let server = Server::shared();
    let r = server
        .execute("def helper():\n    raise ValueError('boom')\n\ndef main():\n    print('before')\n    helper()\n");
    assert_eq!(r.status, 400);
    let body = r.json();
    assert_eq!(body["kind"], "runtime_error");
    assert_eq!(body["error"], "ValueError: boom");
    assert_eq!(body["exception"], json!({"type": "ValueError", "message": "boom"}));
    assert_eq!(body["stdout"], "before\n");
    assert_eq!(body["stderr"], "");
    let tb = body["traceback"].as_str().unwrap();
    assert!(
        tb.starts_with("Traceback (most recent call last):\n  File \"<script>\", line 6, in main\n"),
        "{tb}"
    );
    assert!(tb.contains("File \"<script>\", line 2, in helper"), "{tb}");
    assert!(tb.ends_with("ValueError: boom\n"), "{tb}");
    assert!(
        !tb.contains("runner") && !tb.contains("<string>") && !tb.contains("/work/"),
        "{tb}"
    );
}

/// `error` is one line for any reader: Python's `splitlines` finds none of the line breaks an
/// exception's message may carry (the `exception` field keeps the message as raised).
#[test]
fn an_exception_message_with_line_breaks_is_one_line_in_error() {
    let server = Server::shared();
    let message = "a\nb\r\nc\u{0b}d\u{0c}e\u{1c}f\u{1d}g\u{1e}h\u{85}i\u{2028}j\u{2029}k";
    let script = format!("def main():\n    raise ValueError({})\n", json!(message));
    let body = server.execute(&script).json();
    assert_eq!(body["kind"], "runtime_error");
    assert_eq!(body["error"], "ValueError: a b  c d e f g h i j k");
    assert_eq!(body["exception"]["message"], message);
}

#[test]
fn module_level_exceptions_are_runtime_errors() {
    let server = Server::shared();
    let r = server.execute("import nonexistent_module_xyz\ndef main():\n    return 1\n");
    assert_eq!(r.kind(), "runtime_error");
    assert_eq!(r.json()["exception"]["type"], "ModuleNotFoundError");
    let r = server.execute("raise KeyError('k')\ndef main():\n    return 1\n");
    assert_eq!(r.json()["exception"], json!({"type": "KeyError", "message": "'k'"}));
}

#[test]
fn result_not_json() {
    let server = Server::shared();
    for (expr, type_name) in [
        ("{1, 2}", "set"),
        ("object()", "object"),
        ("float('nan')", "float NaN or infinity"),
        ("[1.0, float('-inf')]", "float NaN or infinity"),
        ("b'bytes'", "bytes"),
        ("(x for x in [1])", "generator"),
    ] {
        let r = server.execute(&format!("def main():\n    return {expr}\n"));
        assert_eq!(
            (r.status, r.kind().as_str()),
            (400, "result_not_json"),
            "{expr}: {}",
            r.text()
        );
        assert!(
            r.json()["error"].as_str().unwrap().contains(type_name),
            "{expr}: {}",
            r.text()
        );
    }
}

#[test]
fn result_too_large() {
    let server = Server::start_cold_with(&[("MAX_RESULT_BYTES", "100000")]);
    let r = server.execute("def main():\n    return 'x' * 200000\n");
    assert_eq!((r.status, r.kind().as_str()), (400, "result_too_large"), "{}", r.text());
    let r = server.execute("def main():\n    return 'x' * 1000\n");
    assert_eq!(r.status, 200);
}

#[test]
fn exits_before_main_returns() {
    let server = Server::shared();
    let cases = [
        ("import sys\ndef main():\n    sys.exit(3)\n", json!({"exit_code": 3})),
        ("import sys\ndef main():\n    sys.exit()\n", json!({"exit_code": 0})),
        (
            "import sys\ndef main():\n    sys.exit('bye')\n",
            json!({"exit_code": 1}),
        ),
        ("import os\ndef main():\n    os._exit(7)\n", json!({"exit_code": 7})),
        (
            "import sys\nsys.exit(2)\ndef main():\n    return 1\n",
            json!({"exit_code": 2}),
        ),
        (
            "import os, signal\ndef main():\n    os.kill(os.getpid(), signal.SIGTERM)\n",
            json!({"signal": 15}),
        ),
        (
            "import os, signal\ndef main():\n    os.kill(os.getpid(), signal.SIGKILL)\n",
            json!({"signal": 9}),
        ),
        // The signal of the CPU-time backstop, sent long before any limit: the script's own
        // doing, not a timeout.
        (
            "import os, signal\ndef main():\n    os.kill(os.getpid(), signal.SIGXCPU)\n",
            json!({"signal": 24}),
        ),
    ];
    for (script, field) in cases {
        let r = server.execute(script);
        assert_eq!((r.status, r.kind().as_str()), (400, "exited"), "{script}: {}", r.text());
        let body = r.json();
        let (key, value) = field.as_object().unwrap().iter().next().unwrap();
        assert_eq!(&body[key], value, "{script}: {}", r.text());
        let message = body["error"].as_str().unwrap_or_default();
        assert!(message.ends_with("before main() returned"), "{script}: {message}");
    }
    // Ended after main() returned, before its value was sent: still `exited`, and said so.
    for script in [
        "import atexit, os\natexit.register(os._exit, 3)\ndef main():\n    return 'value'\n",
        "import os, threading, time\ndef later():\n    time.sleep(0.1)\n    os._exit(3)\ndef main():\n    threading.Thread(target=later).start()\n    return 'value'\n",
    ] {
        let r = server.execute(script);
        assert_eq!((r.status, r.kind().as_str()), (400, "exited"), "{script}: {}", r.text());
        assert_eq!(r.json()["exit_code"], 3, "{script}: {}", r.text());
        let message = r.json()["error"].as_str().unwrap_or_default().to_string();
        assert!(message.contains("after main() returned"), "{script}: {message}");
    }
    let r = server.execute("import sys\ndef main():\n    print('partial')\n    sys.exit('bye')\n");
    assert_eq!(r.json()["stdout"], "partial\n");
    assert_eq!(r.json()["stderr"], "bye\n");
    assert_serving(&server);
}

#[test]
fn timeout_is_enforced_and_reported() {
    let server = Server::start_cold_with(&[("TIMEOUT_SECONDS", "2")]);
    let started = std::time::Instant::now();
    let r = server.execute(
        "import time\ndef main():\n    print('started', flush=True)\n    while True:\n        time.sleep(0.1)\n",
    );
    let took = started.elapsed();
    assert_eq!((r.status, r.kind().as_str()), (400, "timeout"), "{}", r.text());
    assert_eq!(r.json()["limit_seconds"], 2.0);
    assert_eq!(r.json()["stdout"], "started\n");
    assert!(took.as_secs_f64() < 7.0, "a 2 s limit answered after {took:?}");
    assert_serving(&server);
}

#[test]
fn memory_limit_is_enforced_and_reported() {
    let server = Server::start_cold_with(&[("MEMORY_LIMIT_MB", "256")]);
    let scripts = [
        "def main():\n    x = bytearray(400 * 1024 * 1024)\n    return len(x)\n",
        "def main():\n    chunks = []\n    while True:\n        chunks.append(bytearray(8 * 1024 * 1024))\n",
        "import numpy as np\ndef main():\n    return float(np.ones((60000, 1000)).sum())\n",
    ];
    for script in scripts {
        let r = server.execute(script);
        assert_eq!(
            (r.status, r.kind().as_str()),
            (400, "memory_limit"),
            "{script}: {}",
            r.text()
        );
        assert_eq!(r.json()["limit_mb"], 256);
    }
    assert_serving(&server);
}

#[test]
fn errors_after_start_carry_stdout_and_stderr() {
    let server = Server::shared();
    let r = server.execute(
        "import sys\ndef main():\n    print('o')\n    print('e', file=sys.stderr)\n    raise RuntimeError('x')\n",
    );
    let body = r.json();
    assert_eq!(body["stdout"], "o\n");
    assert!(body["stderr"].as_str().unwrap().starts_with("e\n"), "{body}");
}

#[test]
fn stdout_over_the_cap_is_truncated_and_flagged() {
    let server = Server::start_cold_with(&[("MAX_OUTPUT_BYTES", "10000")]);
    let r =
        server.execute("def main():\n    for i in range(100000):\n        print('line', i)\n    return 'finished'\n");
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!(body["result"], "finished");
    assert_eq!(body["stdout_truncated"], true);
    assert_eq!(body["stdout"].as_str().unwrap().len(), 10000);
    assert!(body["stdout"].as_str().unwrap().starts_with("line 0\nline 1\n"));
    let r = server.execute("def main():\n    print('short')\n    return 1\n");
    assert!(r.json().get("stdout_truncated").is_none());
}

#[test]
fn invalid_requests() {
    let server = Server::shared();
    let post = |body: &str| {
        server.request(
            "POST",
            "/execute",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
    };
    for (body, kind) in [
        ("not json", "invalid_json"),
        ("{\"script\": ", "invalid_json"),
        ("", "invalid_json"),
        ("[\"def main(): pass\"]", "invalid_request"),
        ("42", "invalid_request"),
        ("{}", "invalid_request"),
        ("{\"script\": 1}", "invalid_request"),
        ("{\"script\": [\"def main(): pass\"]}", "invalid_request"),
        ("{\"script\": \"\"}", "invalid_request"),
        ("{\"code\": \"def main(): pass\"}", "invalid_request"),
    ] {
        let r = post(body);
        assert_eq!((r.status, r.kind().as_str()), (400, kind), "{body}");
        assert!(r.json()["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    let r = server.request(
        "POST",
        "/execute",
        &[("Content-Type", "application/json")],
        b"{\"script\": \"\xff\xfe\"}",
    );
    assert_eq!(r.kind(), "invalid_json");
    assert_serving(&server);
}

#[test]
fn content_types() {
    let server = Server::shared();
    let body = br#"{"script": "def main():\n    return 1\n"}"#;
    for ct in [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
    ] {
        let r = server.request("POST", "/execute", &[("Content-Type", ct)], body);
        assert_eq!(r.status, 200, "{ct}: {}", r.text());
    }
    let r = server.request("POST", "/execute", &[], body);
    assert_eq!(r.status, 200, "no content type: {}", r.text());
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let r = server.request("POST", "/execute", &[("Content-Type", ct)], body);
        assert_eq!((r.status, r.kind().as_str()), (415, "unsupported_media_type"), "{ct}");
    }
    // A compressed body is refused for its coding, named, not read as broken JSON; so is one
    // compressed as a transfer coding (HTTP decodes only `chunked` itself).
    let gzipped = [
        0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0xab, 0xae, 0x05, 0x00, 0x43, 0xbf, 0xa6, 0xa3,
        0x02, 0x00, 0x00, 0x00,
    ];
    let json = [("Content-Type", "application/json")];
    let mut chunked = b"POST /execute HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nTransfer-Encoding: gzip, chunked\r\n\r\n16\r\n".to_vec();
    chunked.extend_from_slice(&gzipped);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    for r in [
        server.request("POST", "/execute", &[json[0], ("Content-Encoding", "gzip")], &gzipped),
        common::Response::parse(&server.send_raw(&chunked, std::time::Duration::from_secs(30))),
    ] {
        assert_eq!(
            (r.status, r.kind().as_str()),
            (415, "unsupported_media_type"),
            "{}",
            r.text()
        );
        assert!(r.json()["error"].as_str().unwrap().contains("gzip"), "{}", r.text());
    }
    let r = server.request("POST", "/execute", &[json[0], ("Content-Encoding", "identity")], body);
    assert_eq!(r.status, 200, "identity: {}", r.text());
    // Content-Type is one value: a second one (which of them is meant?) is refused.
    let r = server.request("POST", "/execute", &[json[0], ("Content-Type", "text/plain")], body);
    assert_eq!(
        (r.status, r.kind().as_str()),
        (415, "unsupported_media_type"),
        "{}",
        r.text()
    );
}

#[test]
fn payload_and_script_size_limits() {
    let server = Server::start_cold_with(&[("MAX_BODY_BYTES", "100000"), ("MAX_SCRIPT_BYTES", "50000")]);
    let big = format!("def main():\n    return 1\n#{}\n", "x".repeat(200_000));
    let r = server.execute(&big);
    assert_eq!((r.status, r.kind().as_str()), (413, "payload_too_large"));
    let long = format!("def main():\n    return 1\n#{}\n", "x".repeat(60_000));
    let r = server.execute(&long);
    assert_eq!((r.status, r.kind().as_str()), (400, "invalid_request"));
    assert_serving(&server);
}

#[test]
fn a_declared_huge_body_is_refused_without_reading_it() {
    let server = Server::shared();
    let mut stream = server.connect();
    use std::io::{Read, Write};
    stream
        .write_all(b"POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n{")
        .unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut answer = vec![0u8; 4096];
    let n = stream.read(&mut answer).unwrap();
    let r = common::Response::parse(&answer[..n]);
    assert_eq!((r.status, r.kind().as_str()), (413, "payload_too_large"));
}

#[test]
fn unknown_paths_and_methods() {
    let server = Server::shared();
    let r = server.get("/nope");
    assert_eq!((r.status, r.kind().as_str()), (404, "not_found"));
    let r = server.get("/healthz");
    assert_eq!(r.status, 404);
    let r = server.get("/execute");
    assert_eq!((r.status, r.kind().as_str()), (405, "method_not_allowed"));
    assert_eq!(r.header("allow"), Some("POST"));
    let r = server.request("DELETE", "/health", &[], b"");
    assert_eq!((r.status, r.kind().as_str()), (405, "method_not_allowed"));
    assert!(r.header("allow").unwrap().contains("GET"));
}

#[test]
fn health_reports_the_isolation_in_force() {
    let server = Server::shared();
    let r = server.get("/health");
    assert_eq!(r.status, 200);
    let body = r.json();
    assert_eq!(body["status"], "ok");
    assert!(body["python"].as_str().unwrap().starts_with("3.11"));
    assert!(body["isolation"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n == "network"));
    assert_eq!(body["isolation"]["seccomp"], true);
}

#[test]
fn every_response_has_a_request_id() {
    let server = Server::shared();
    let a = server.get("/health");
    let b = server.get("/nope");
    let (a, b) = (
        a.header("x-request-id").unwrap().to_string(),
        b.header("x-request-id").unwrap().to_string(),
    );
    assert!(!a.is_empty() && a != b);
    let r = server.request("GET", "/health", &[("X-Request-Id", "caller-123")], b"");
    assert_eq!(r.header("x-request-id"), Some("caller-123"));
}

#[test]
fn logs_are_json_lines_without_the_script_or_its_output() {
    let server = Server::start_cold();
    server.execute("SECRET_MARKER_IN_SCRIPT = 1\ndef main():\n    print('SECRET_MARKER_IN_OUTPUT')\n    return 1\n");
    server.execute("def main(:\n");
    std::thread::sleep(std::time::Duration::from_millis(100));
    let raw = server.raw_logs();
    assert!(!raw.contains("SECRET_MARKER"), "{raw}");
    let lines = server.log_lines();
    assert_eq!(lines.len(), raw.lines().count(), "every line is JSON");
    for line in &lines {
        assert!(line["severity"].is_string() && line["message"].is_string(), "{line}");
    }
    let requests: Vec<_> = lines
        .iter()
        .filter(|l| l["message"] == "request" && l["path"] == "/execute")
        .collect();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0]["status"], 200);
    assert_eq!(requests[1]["kind"], "syntax_error");
    assert!(requests[0]["latency_ms"].is_number() && requests[0]["method"] == "POST");
}

#[test]
fn every_corpus_script_runs_end_to_end() {
    let server = Server::shared();
    let dir = common::repo().join("tests/corpus");
    let mut paths: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    paths.sort();
    for path in paths {
        let script = std::fs::read_to_string(&path).unwrap();
        let r = server.execute(&script);
        assert_eq!(r.status, 200, "{}: {}", path.display(), r.text());
    }
}

#[test]
fn overloaded_when_every_slot_is_busy_and_the_queue_is_full() {
    let server = Server::start_cold_with(&[("MAX_CONCURRENT", "1"), ("QUEUE_LIMIT", "1")]);
    let slow = || {
        let body = json!({"script": "import time\ndef main():\n    time.sleep(2)\n    return 'slow'\n"});
        common::post_in_background(server.port, body)
    };
    let running = slow();
    std::thread::sleep(std::time::Duration::from_millis(400));
    let queued = slow();
    std::thread::sleep(std::time::Duration::from_millis(400));
    let r = server.execute("def main():\n    return 1\n");
    assert_eq!((r.status, r.kind().as_str()), (429, "overloaded"), "{}", r.text());
    let retry_after: u64 = r.header("retry-after").expect("Retry-After").parse().unwrap();
    assert!(retry_after >= 1);
    assert_eq!(running.join().unwrap().result(), json!("slow"));
    assert_eq!(queued.join().unwrap().result(), json!("slow"));
    assert_serving(&server);
}

#[test]
fn overloaded_when_the_queue_wait_runs_out() {
    let server = Server::start_cold_with(&[("MAX_CONCURRENT", "1"), ("QUEUE_TIMEOUT_SECONDS", "0.5")]);
    let body = json!({"script": "import time\ndef main():\n    time.sleep(2)\n    return 'slow'\n"});
    let running = common::post_in_background(server.port, body);
    std::thread::sleep(std::time::Duration::from_millis(400));
    let r = server.execute("def main():\n    return 1\n");
    assert_eq!((r.status, r.kind().as_str()), (429, "overloaded"));
    // Server-Timing says where its time went: waiting in the queue.
    let timing = r.header("server-timing").unwrap_or_default().to_string();
    let queued_ms: f64 = timing
        .split(", ")
        .find_map(|metric| metric.strip_prefix("queue;dur="))
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("no queue time in {timing:?}"));
    assert!(queued_ms >= 450.0, "{timing}");
    running.join().unwrap();
    assert_serving(&server);
}

#[test]
fn unavailable_when_a_sandbox_cannot_start_and_the_message_has_no_internals() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("nsjail.cfg");
    std::fs::copy(common::repo().join("nsjail.cfg"), &config).unwrap();
    // Every execution starts its own nsjail (a zygote started before the config broke would
    // go on serving: tests/zygote.rs covers zygotes that cannot be replaced).
    let server = Server::start_cold_with(&[
        ("NSJAIL_CONFIG", config.to_str().unwrap()),
        ("SANDBOX_STRATEGY", "cold"),
    ]);
    assert_serving(&server);
    // The jail configuration breaks after start-up: executions must fail, never run unjailed.
    std::fs::write(&config, "mount { this is broken").unwrap();
    let r = server.execute("def main():\n    return 1\n");
    assert_eq!((r.status, r.kind().as_str()), (503, "unavailable"), "{}", r.text());
    let text = r.text();
    assert!(
        !text.contains("nsjail.cfg") && !text.contains(dir.path().to_str().unwrap()) && !text.contains("[F]"),
        "{text}"
    );
    assert!(
        server
            .wait_for_log(|l| l["message"] == "a jail failed to start")
            .is_some(),
        "the cause is logged for the operator"
    );
}

/// A client that writes its whole body before reading (Python's urllib and requests do) gets
/// the JSON refusal, not a reset connection, for bodies up to several times the limit: a 413,
/// and the answers given without reading the body (401, 404, 405, 415).
#[test]
fn a_refused_body_written_whole_still_gets_its_answer() {
    let server = Server::shared();
    let token = "t0ken";
    let guarded = Server::shared_with(&[("API_TOKEN", "t0ken")]);
    let big = 8usize << 20;
    let cases = [
        (
            server,
            "POST /execute",
            "application/json",
            12usize << 20,
            413,
            "payload_too_large",
        ),
        (
            server,
            "POST /execute",
            "application/json",
            3 << 20,
            413,
            "payload_too_large",
        ),
        (
            server,
            "POST /execute",
            "text/plain",
            big,
            415,
            "unsupported_media_type",
        ),
        (server, "POST /nowhere", "application/json", big, 404, "not_found"),
        (
            server,
            "PUT /execute",
            "application/json",
            big,
            405,
            "method_not_allowed",
        ),
        (guarded, "POST /execute", "application/json", big, 401, "unauthorized"),
    ];
    for (server, request_line, content_type, size, status, kind) in cases {
        let body = format!("{{\"script\": \"{}\"}}", "x".repeat(size));
        let mut raw = format!(
            "{request_line} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        raw.extend_from_slice(body.as_bytes());
        // As urllib does: the whole request first (a write error ends it there), then read.
        let mut stream = server.connect();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        stream.write_all(&raw).unwrap_or_else(|e| {
            panic!("{request_line}, {content_type}, {size} bytes: the service stopped reading the body: {e}")
        });
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        let r = common::Response::parse(&answer);
        assert_eq!(
            (r.status, r.kind()),
            (status, kind.to_string()),
            "{request_line}, {content_type}, {size} bytes: {}",
            String::from_utf8_lossy(&answer[..answer.len().min(300)])
        );
    }
    assert_serving(&server);
    let authorization = format!("Bearer {token}");
    let r = guarded.request(
        "POST",
        "/execute",
        &[("Content-Type", "application/json"), ("Authorization", &authorization)],
        b"{\"script\": \"def main():\\n    return 1\\n\"}",
    );
    assert_eq!(r.status, 200, "{}", r.text());
}
