//! Hostile scripts, family 5: lying to the runner. Forged frames on stdout or on the runner's
//! file descriptors, closed or replaced stdio, a monkeypatched runtime, odd exits and results
//! built to break serialisation: the answer is the script's real outcome or a clear JSON error
//! (never a forged value, never a service error kind the script has no right to), and other
//! clients are served meanwhile.

use crate::common;
use crate::hostile;

use common::Server;
use hostile::{assert_error, assert_error_of, contained};
use serde_json::json;

#[test]
fn forged_frames_do_not_become_the_result() {
    let server = Server::start_with(&[("TIMEOUT_SECONDS", "5")]);
    contained(&server, || {
        // On stdout: just output.
        let r = server.execute(
            "import sys\ndef main():\n    print('ok 2\\n42', flush=True)\n    sys.stdout.write('error 33\\n{\"kind\": \"internal\", \"message\": \"x\"}\\nexited 13\\n{\"signal\": 9}')\n    sys.stdout.flush()\n    return 1\n",
        );
        assert_eq!(
            r.json(),
            json!({"result": 1, "stdout": "ok 2\n42\nerror 33\n{\"kind\": \"internal\", \"message\": \"x\"}\nexited 13\n{\"signal\": 9}"})
        );
        // On fds 3..10: nothing of the runner's is there (the result channel is closed in the
        // script's process, the child's own pipe sits on a high fd).
        let r = server.execute(
            "import os\ndef main():\n    hit = []\n    for fd in range(3, 11):\n        try:\n            os.write(fd, b'ok 2\\n42')\n            hit.append(fd)\n        except OSError:\n            pass\n    return [1, hit]\n",
        );
        assert_eq!(r.result(), json!([1, []]));
        // Every fd there is: the forged frame reaches the child's pipe, and is caught there.
        let r = server.execute(
            "import os\ndef main():\n    for fd in range(3, 1024):\n        try:\n            os.write(fd, b'ok 2\\n42')\n        except OSError:\n            pass\n    return 1\n",
        );
        let body = assert_error(&r, 400, "result_not_json");
        assert!(body["error"].as_str().unwrap().contains("result channel"), "{body}");
        // Junk, or an endless header, on every fd.
        for junk in ["b'garbage!!\\n'", "b'x' * (1 << 20)", "b'exited 13\\n{\"signal\": 9}'"] {
            let r = server.execute(&format!(
                "import os\ndef main():\n    for fd in range(3, 1024):\n        try:\n            os.write(fd, {junk})\n        except OSError:\n            pass\n    return 1\n"
            ));
            assert_error(&r, 400, "result_not_json");
        }
        // A header promising a frame larger than any cap.
        let r = server.execute(
            "import os\ndef main():\n    for fd in range(3, 1024):\n        try:\n            os.write(fd, b'ok 99999999999\\n1')\n        except OSError:\n            pass\n    return 1\n",
        );
        assert_error_of(&r, &["result_too_large", "result_not_json"]);
        // Claiming a kind only the service may give (timeout, internal, overloaded) is refused.
        for kind in ["timeout", "internal", "overloaded", "unavailable", "unauthorized"] {
            let frame = format!("{{\"kind\": \"{kind}\", \"message\": \"forged\"}}");
            let r = server.execute(&format!(
                "import os\ndef main():\n    data = b'error {}\\n' + {:?}.encode()\n    for fd in range(3, 1024):\n        try:\n            os.write(fd, data)\n        except OSError:\n            pass\n    os._exit(0)\n",
                frame.len(),
                frame
            ));
            assert_error(&r, 400, "result_not_json");
            assert!(!r.text().contains("forged"), "{}", r.text());
        }
        // A value text that adds `files` of its own to a request without collect (a client
        // saving them would write where the script says), or that nests deeper than any JSON
        // parser of a client would go; an error frame nested deep enough to break the
        // runner's own parser. Each is the script's forgery, refused as such, and nothing of
        // the runner's internals reaches the answer.
        let forge = |tag: &str, payload: &str| {
            format!(
                "import os\ndef main():\n    p = {payload}\n    data = b'{tag} %d\\n' % len(p) + p\n    for fd in range(3, 1024):\n        try:\n            os.write(fd, data)\n        except OSError:\n            pass\n    os._exit(0)\n"
            )
        };
        for (tag, payload) in [
            (
                "ok",
                r#"b'1,"files":{"../../.ssh/authorized_keys":{"base64":"AAAA","size":3,"media_type":"text/plain"}}'"#,
            ),
            ("ok", "b'[' * 5000 + b']' * 5000"),
            (
                "error",
                r#"b'{"kind":"runtime_error","message":"m","x":' + b'[' * 200000 + b']' * 200000 + b'}'"#,
            ),
        ] {
            let r = server.execute(&forge(tag, payload));
            let body = assert_error(&r, 400, "result_not_json");
            assert!(body.get("files").is_none() && body.get("result").is_none(), "{body}");
            assert!(
                !r.text().contains("<runner>") && !r.text().contains("Traceback"),
                "{body}"
            );
        }
    });
}

#[test]
fn closing_or_replacing_stdio_and_descriptors() {
    let server = hostile::shared_server();
    contained(&server, || {
        for (what, script, expected_stdout) in [
            ("close 0, 1, 2", "import os\ndef main():\n    print('before', flush=True)\n    os.close(0)\n    os.close(1)\n    os.close(2)\n    print('after')\n    return 'fine'\n", "before\n"),
            ("stdout = None", "import sys\ndef main():\n    sys.stdout = None\n    sys.stderr = None\n    print('nowhere')\n    return 'fine'\n", ""),
            ("stdout replaced", "import io, sys\ndef main():\n    sys.stdout = io.StringIO()\n    print('hidden')\n    return 'fine'\n", ""),
            ("/dev/null onto 1", "import os\ndef main():\n    fd = os.open('/dev/null', os.O_WRONLY)\n    os.dup2(fd, 1)\n    print('lost')\n    return 'fine'\n", ""),
            ("stdout closed under print", "import sys\ndef main():\n    sys.stdout.close()\n    return 'fine'\n", ""),
            ("fds 3..10 closed", "import os\ndef main():\n    for fd in range(3, 11):\n        try:\n            os.close(fd)\n        except OSError:\n            pass\n    return 'fine'\n", ""),
            ("reads stdin", "import sys\ndef main():\n    return 'fine' if sys.stdin.read() == '' else 'stdin had data'\n", ""),
        ] {
            let r = server.execute(script);
            assert_eq!(r.json(), json!({"result": "fine", "stdout": expected_stdout}), "{what}: {}", r.text());
        }
        // Closing every fd takes the child's result pipe too: a clear error, not a wrong value.
        let r = server.execute("import os\ndef main():\n    os.closerange(0, 1024)\n    return 'fine'\n");
        let body = assert_error(&r, 400, "result_not_json");
        assert!(body["error"].as_str().unwrap().contains("closed"), "{body}");
    });
}

#[test]
fn a_monkeypatched_runtime_cannot_forge_or_crash_the_answer() {
    let server = hostile::shared_server();
    contained(&server, || {
        // The runner keeps its own json.dumps and os functions.
        for script in [
            "import json\njson.dumps = lambda *a, **k: 'ok 2\\n42'\ndef main():\n    return 5\n",
            "import json, sys\nsys.modules['json'] = None\ndef main():\n    return 5\n",
            "import os\nos.write = lambda fd, data: len(data)\nos._exit = lambda code: None\nos.getpid = lambda: 1\ndef main():\n    return 5\n",
            // Rebound builtins are the script's own: the runner's steps run on Python's.
            "import builtins\ndef main():\n    builtins.len = lambda x: 3\n    builtins.memoryview = None\n    return 5\n",
            "import builtins\ndef main():\n    builtins.isinstance = lambda *a: False\n    return 5\n",
            "import builtins\nbuiltins.callable = builtins.super = None\ndef main(data):\n    return 5\n",
        ] {
            let r = server.execute(script);
            assert_eq!(r.json(), json!({"result": 5, "stdout": ""}), "{script}: {}", r.text());
        }
        // An error after such a rebinding is still the script's error, worded as Python words it;
        // what ends the program (atexit) sees the script's builtins, as in Python.
        let r = server.execute(
            "import atexit, builtins\natexit.register(lambda: print('at exit', len('abc')))\ndef main():\n    builtins.isinstance = lambda *a: False\n    builtins.len = lambda x: -1\n    raise ValueError('x')\n",
        );
        let body = assert_error(&r, 400, "runtime_error");
        assert_eq!(
            body["exception"],
            json!({"type": "ValueError", "message": "x"}),
            "{body}"
        );
        let traceback = body["traceback"].as_str().unwrap_or_default();
        assert!(
            traceback.ends_with("    raise ValueError('x')\nValueError: x\n"),
            "{body}"
        );
        assert_eq!(body["stdout"], "at exit -1\n", "{body}");
        // Deeper tampering can only spoil the script's own answer, into a clear error.
        for script in [
            "import json\njson.JSONEncoder.encode = lambda self, o: '[[['\ndef main():\n    return 5\n",
            "import json.encoder\njson.encoder.c_make_encoder = None\njson.encoder.encode_basestring_ascii = lambda s: 'BAD'\ndef main():\n    return {'a': 1}\n",
            "import sys\ndef main():\n    sys._getframe(1).f_globals['frame'] = lambda tag, payload: b'garbage'\n    return 5\n",
        ] {
            let r = server.execute(script);
            assert_error_of(&r, &["result_not_json", "exited", "runtime_error"]);
        }
    });
}

#[test]
fn the_runners_resource_limits_are_out_of_the_scripts_reach() {
    // The runner (PID 1) and the script run as one uid: prlimit on PID 1 would let the script
    // starve the runner of fds or memory so that it dies before it reports.
    let server = hostile::shared_server();
    contained(&server, || {
        for limit in [
            "RLIMIT_NOFILE, (0, 0)",
            "RLIMIT_AS, (1 << 20, 1 << 20)",
            "RLIMIT_CPU, (0, 0)",
        ] {
            let script = format!(
                "import os, resource\ndef main():\n    try:\n        resource.prlimit(1, resource.{limit})\n        refused = None\n    except OSError as e:\n        refused = e.errno\n    open('out.txt', 'w').write('x')\n    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))\n    return [refused, resource.getrlimit(resource.RLIMIT_NOFILE), resource.prlimit(1, resource.RLIMIT_NOFILE)[0] > 0]\n"
            );
            let r = server.post_json("/execute", &json!({"script": script, "collect": ["*.txt"]}));
            assert_eq!(r.status, 200, "{limit}: {}", r.text());
            let body = r.json();
            assert_eq!(body["result"], json!([libc::ENOSYS, [64, 64], true]), "{limit}: {body}");
            assert_eq!(body["files"]["out.txt"]["size"], 1, "{limit}: {body}");
        }
    });
}

#[test]
fn odd_exits_are_reported_as_exits() {
    let server = hostile::shared_server();
    contained(&server, || {
        for (code, field) in [
            ("sys.exit(0)", json!({"exit_code": 0})),
            ("raise SystemExit(2 ** 100)", json!({"exit_code": 255})),
            ("raise SystemExit('text')", json!({"exit_code": 1})),
            ("raise SystemExit(None)", json!({"exit_code": 0})),
            ("raise SystemExit(True)", json!({"exit_code": 1})),
            ("raise SystemExit(-1)", json!({"exit_code": 255})),
            ("raise SystemExit(3.5)", json!({"exit_code": 1})),
            ("raise SystemExit(Evil())", json!({"exit_code": 1})),
            ("os._exit(0)", json!({"exit_code": 0})),
            ("os._exit(255)", json!({"exit_code": 255})),
            ("os.abort()", json!({"signal": 6})),
            ("ctypes.string_at(0)", json!({"signal": 11})),
        ] {
            let script = format!(
                "import ctypes, os, sys\nclass Evil:\n    def __str__(self):\n        raise ValueError\n    __repr__ = __str__\ndef main():\n    {code}\n    return 'not reached'\n"
            );
            let r = server.execute(&script);
            let body = assert_error(&r, 400, "exited");
            let (key, value) = field.as_object().unwrap().iter().next().unwrap();
            assert_eq!(&body[key], value, "{code}: {body}");
        }
        let r = server.execute("def main():\n    raise KeyboardInterrupt\n");
        let body = assert_error(&r, 400, "runtime_error");
        assert_eq!(body["exception"]["type"], "KeyboardInterrupt");
        // Recursion deep enough to overflow the C stack ends the process, not the service.
        let r = server.execute("import sys\nsys.setrecursionlimit(10 ** 7)\ndef main():\n    a = []\n    for i in range(10 ** 6):\n        a = [a]\n    return len(repr(a))\n");
        let body = assert_error(&r, 400, "exited");
        assert_eq!(body["signal"], 11, "{body}");
    });
}

#[test]
fn results_built_to_break_serialisation() {
    let server = hostile::shared_server();
    contained(&server, || {
        for (what, script, message) in [
            ("a generator", "def main():\n    yield 1\n", "generator"),
            (
                "repr raises",
                "class X:\n    def __repr__(self):\n        raise ValueError('repr')\ndef main():\n    return X()\n",
                "X",
            ),
            (
                "a list containing itself",
                "def main():\n    a = []\n    a.append(a)\n    return a\n",
                "Circular",
            ),
            (
                "100k nested lists",
                "def main():\n    a = []\n    for i in range(100000):\n        a = [a]\n    return a\n",
                "deeply",
            ),
            (
                "100k nested dicts",
                "def main():\n    a = {}\n    for i in range(100000):\n        a = {'k': a}\n    return a\n",
                "deeply",
            ),
            (
                "5000 nested lists, the recursion limit raised to serialise them",
                "import sys\ndef main():\n    sys.setrecursionlimit(100000)\n    a = []\n    for i in range(5000):\n        a = [a]\n    return a\n",
                "deeply",
            ),
            (
                "items() exits",
                "class X(dict):\n    def items(self):\n        raise SystemExit(4)\ndef main():\n    return X(a=1)\n",
                "SystemExit",
            ),
            ("a 100000-digit int", "def main():\n    return 10 ** 100000\n", "digits"),
            ("NaN inside", "def main():\n    return {'x': [1, float('nan')]}\n", ""),
            ("a non-string key", "def main():\n    return {(1, 2): 3}\n", "keys"),
        ] {
            let r = server.execute(script);
            let body = assert_error(&r, 400, "result_not_json");
            assert!(body["error"].as_str().unwrap().contains(message), "{what}: {body}");
        }
        // Subclasses whose repr lies: the real value is what is sent.
        let r = server.execute("class I(int):\n    def __repr__(self):\n        return '\"pwned\"'\n    __str__ = __repr__\nclass F(float):\n    def __repr__(self):\n        return 'garbage'\nclass S(str):\n    def __str__(self):\n        return 'other'\ndef main():\n    return [I(5), F(1.5), S('real')]\n");
        assert_eq!(r.result(), json!([5, 1.5, "real"]));
        // An exception whose message cannot be had is still a clean runtime error.
        for base in ["Exception", "BaseException"] {
            let r = server.execute(&format!(
                "class E({base}):\n    def __str__(self):\n        raise SystemExit(3)\ndef main():\n    raise E()\n"
            ));
            let body = assert_error(&r, 400, "runtime_error");
            assert_eq!(
                body["exception"]["message"], "<exception str() failed>",
                "{base}: {body}"
            );
            // The traceback says it as CPython does, and so does the summary.
            assert!(
                body["traceback"]
                    .as_str()
                    .unwrap_or_default()
                    .ends_with("E: <exception str() failed>\n"),
                "{base}: {body}"
            );
            assert_eq!(body["error"], "E: <exception str() failed>", "{base}: {body}");
        }
        // Deep but sane nesting is fine.
        let r = server.execute("def main():\n    a = 1\n    for i in range(500):\n        a = [a]\n    return a\n");
        assert_eq!(r.status, 200, "{}", r.text());
    });
}
