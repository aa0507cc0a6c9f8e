//! Data in and out (API.md, "Data in and out"): `input`, `files`, `collect`, `include`, and
//! the `usage` every error after the start carries, against the real service.

use crate::common;
use common::{assert_serving, Server};
use serde_json::{json, Value};

fn post(server: &Server, body: Value) -> common::Response {
    server.post_json("/execute", &body)
}

/// A request refused before anything ran: 400 `invalid_request` saying `why`.
fn assert_refused_before_running(r: &common::Response, why: &str) {
    assert_eq!(
        (r.status, r.kind()),
        (400, "invalid_request".to_string()),
        "{}",
        r.text()
    );
    let body = r.json();
    assert!(body["error"].as_str().unwrap().contains(why), "{body}");
    assert!(body.get("stdout").is_none(), "something ran: {body}");
}

fn b64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn unb64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let digits: Vec<u8> = text.bytes().filter(|&c| c != b'=').map(value).collect();
    let mut out = Vec::new();
    for chunk in digits.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &d)| n | u32::from(d) << (18 - 6 * i));
        for i in 0..chunk.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

#[test]
fn input_is_handed_to_main_as_data() {
    let server = Server::shared_cold();
    let r = post(
        &server,
        json!({"script": "def main(data):\n    return {'sum': sum(data['values']) * data['scale'], 'echo': data}\n",
               "input": {"values": [1, 2, 3], "scale": 10, "text": "é\"'\n{}"}}),
    );
    assert_eq!(
        r.json(),
        json!({"result": {"sum": 60, "echo": {"values": [1, 2, 3], "scale": 10, "text": "é\"'\n{}"}}, "stdout": ""})
    );
    // Numbers keep their digits on the way in and out.
    let r = server.request(
        "POST",
        "/execute",
        &[("Content-Type", "application/json")],
        br#"{"script": "def main(x):\n    return [x, type(x[0]).__name__]\n", "input": [123456789012345678901234567890, 0.1]}"#,
    );
    assert_eq!(
        r.text(),
        r#"{"result":[[123456789012345678901234567890, 0.1], "int"],"stdout":""}"#
    );
    // Any JSON value, and None when the request has none (or null).
    for (input, expected) in [
        (json!("s"), json!("s")),
        (json!(false), json!(false)),
        (json!([]), json!([])),
    ] {
        let r = post(
            &server,
            json!({"script": "def main(v):\n    return v\n", "input": input}),
        );
        assert_eq!(r.result(), expected);
    }
    for body in [
        json!({"script": "def main(v):\n    return v\n"}),
        json!({"script": "def main(v):\n    return v\n", "input": null}),
    ] {
        assert_eq!(post(&server, body).result(), json!(null));
    }
    // A parameter with a default gets None too without input (API.md: "None when the request
    // has none"); a main taking only *args gets no argument then.
    for body in [
        json!({"script": "def main(v=5):\n    return v\n"}),
        json!({"script": "def main(v=5):\n    return v\n", "input": null}),
    ] {
        assert_eq!(post(&server, body).result(), json!(null));
    }
    let r = post(&server, json!({"script": "def main(*args):\n    return list(args)\n"}));
    assert_eq!(r.result(), json!([]));
    let r = post(&server, json!({"script": "def main(v=5):\n    return v\n", "input": 6}));
    assert_eq!(r.result(), json!(6));
    // The main that is called is the one bound last, whatever bound it.
    for script in [
        "def main():\n    pass\nmain = lambda x: ['lambda', x]\n",
        "def main():\n    pass\nclass Call:\n    def __call__(self, x):\n        return ['lambda', x]\nmain = Call()\n",
        "def main():\n    pass\n[main := (lambda x: ['lambda', x])]\n",
        "def main():\n    pass\nmatch [lambda x: ['lambda', x]]:\n    case [main]:\n        pass\n",
        "def main():\n    pass\nmain.__code__ = (lambda x: ['lambda', x]).__code__\n",
        "def main():\n    pass\nexec(\"def main(x):\\n    return ['lambda', x]\\n\")\n",
        "def main():\n    pass\nglobals().update(main=lambda x: ['lambda', x])\n",
    ] {
        let r = post(&server, json!({"script": script, "input": 5}));
        assert_eq!(r.result(), json!(["lambda", 5]), "{script}: {}", r.text());
    }
    // async and *args mains take it too.
    let r = post(
        &server,
        json!({"script": "async def main(*args):\n    return list(args)\n", "input": 7}),
    );
    assert_eq!(r.result(), json!([7]));
    assert_serving(server);
}

#[test]
fn input_for_a_main_without_parameters_is_refused_before_running() {
    let server = Server::shared_cold();
    let r = post(
        &server,
        json!({"script": "print('ran')\ndef main():\n    return 1\n", "input": {"a": 1}}),
    );
    assert_refused_before_running(&r, "input");
    // Behind a decorator only the call can tell: still invalid_request.
    let r = post(
        &server,
        json!({"script": "import functools\ndef deco(f):\n    @functools.wraps(f)\n    def w(*a, **k):\n        return f(*a, **k)\n    return w\n@deco\ndef main():\n    return 1\n", "input": 1}),
    );
    assert_eq!(r.kind(), "invalid_request", "{}", r.text());
    assert_eq!(r.status, 400);
    // In the same words as the refusal before running.
    let before = post(&server, json!({"script": "def main():\n    return 1\n", "input": 1}));
    assert_eq!(r.json()["error"], before.json()["error"]);
}

#[test]
fn input_python_cannot_read_is_refused_before_running() {
    let server = Server::shared_cold();
    let script = "print('ran')\ndef main(data):\n    return len(str(data[1]))\n";
    // Python reads integers of up to 4300 digits (sys.int_info.default_max_str_digits).
    let body = |digits: usize| {
        format!(
            r#"{{"script": {}, "input": ["x", {}]}}"#,
            Value::String(script.into()),
            "9".repeat(digits)
        )
    };
    let r = server.request(
        "POST",
        "/execute",
        &[("Content-Type", "application/json")],
        body(4300).as_bytes(),
    );
    assert_eq!(r.json(), json!({"result": 4300, "stdout": "ran\n"}), "{}", r.text());
    let r = server.request(
        "POST",
        "/execute",
        &[("Content-Type", "application/json")],
        body(4301).as_bytes(),
    );
    assert_refused_before_running(&r, "4300 digits");
    assert_serving(server);
}

#[test]
fn files_are_written_into_a_fresh_private_working_directory() {
    let server = Server::shared();
    let bytes: Vec<u8> = (0..=255u8).collect();
    let r = post(
        &server,
        json!({"script": "import os, stat, pandas as pd\ndef main():\n    df = pd.read_csv('data/sales.csv')\n    raw = open('blob.bin', 'rb').read()\n    cwd = os.getcwd()\n    mode = stat.S_IMODE(os.stat(cwd).st_mode)\n    return [int(df['total'].sum()), list(raw) == list(range(256)), cwd.startswith('/tmp/'), oct(mode), sorted(os.listdir('.')), open('note.txt', encoding='utf-8').read()]\n",
               "files": {"data/sales.csv": "month,total\n1,10\n2,15\n", "blob.bin": {"base64": b64(&bytes)}, "note.txt": "héllo\n"}}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.result(),
        json!([25, true, true, "0o700", ["blob.bin", "data", "note.txt"], "héllo\n"])
    );
    // A helper module sent as a file is importable, as beside `python script.py`.
    let r = post(
        &server,
        json!({"script": "import helper\nfrom lib.util import twice\ndef main():\n    return twice(helper.f())\n",
               "files": {"helper.py": "def f():\n    return 21\n", "lib/__init__.py": "", "lib/util.py": "def twice(x):\n    return 2 * x\n"}}),
    );
    assert_eq!(r.json(), json!({"result": 42, "stdout": ""}), "{}", r.text());
    // Directories as deep as a path may go (1024 bytes): each made, none left open.
    let deep = format!("{}/f.txt", vec!["d"; 300].join("/"));
    let r = post(
        &server,
        json!({"script": format!("def main():\n    return open({deep:?}).read()\n"), "files": {deep.clone(): "deep"}}),
    );
    assert_eq!(r.json(), json!({"result": "deep", "stdout": ""}), "{}", r.text());
    // The next execution starts from an empty directory.
    let r = server.execute("import os\ndef main():\n    return [os.listdir('.'), os.path.exists('/tmp/blob.bin')]\n");
    assert_eq!(r.result(), json!([[], false]));
}

#[test]
fn files_named_like_standard_modules_do_not_break_the_runner() {
    // `python script.py` beside a warnings.py still runs (the interpreter loaded its own);
    // the runner's later imports must not pick up the sent files either.
    let files = json!({"warnings.py": "x = 1\n", "traceback.py": "x = 1\n", "contextlib.py": "x = 1\n", "inspect.py": "x = 1\n"});
    for server in [Server::shared(), Server::shared_cold()] {
        let r = post(
            &server,
            json!({"script": "def main():\n    return 1\n", "files": files.clone()}),
        );
        assert_eq!(r.json(), json!({"result": 1, "stdout": ""}), "{}", r.text());
        let r = post(
            &server,
            json!({"script": "import functools\ndef deco(f):\n    @functools.wraps(f)\n    def w(*a):\n        return f(*a)\n    return w\n@deco\ndef main():\n    raise ValueError('mine')\n", "files": files.clone()}),
        );
        assert_eq!((r.status, r.kind().as_str()), (400, "runtime_error"), "{}", r.text());
        let body = r.json();
        assert_eq!(body["exception"]["message"], "mine", "{body}");
        assert!(body["traceback"].as_str().unwrap().contains("in main"), "{body}");
    }
}

#[test]
fn bad_files_are_refused_naming_the_file() {
    let server = Server::shared_cold();
    for (name, content) in [
        ("../escape.txt", json!("x")),
        ("/etc/passwd", json!("x")),
        ("a//b", json!("x")),
        ("./a", json!("x")),
        ("nul\u{0}byte", json!("x")),
        ("", json!("x")),
        ("ok.bin", json!({"base64": "not base64!"})),
        ("num.txt", json!(42)),
    ] {
        let mut files = serde_json::Map::new();
        files.insert(name.to_string(), content);
        let r = post(
            &server,
            json!({"script": "def main():\n    return 1\n", "files": files}),
        );
        assert_eq!(
            (r.status, r.kind()),
            (400, "invalid_request".to_string()),
            "{name:?}: {}",
            r.text()
        );
        let message = r.json()["error"].as_str().unwrap().to_string();
        let shown = Value::String(name.to_string()).to_string();
        assert!(message.contains(&shown), "{name:?} not named in {message}");
    }
    let long = "x".repeat(300);
    let r = post(
        &server,
        json!({"script": "def main():\n    return 1\n", "files": {long: "x"}}),
    );
    assert_eq!(r.kind(), "invalid_request");
    // A file that another's path needs as a directory, even with a name sorting between them.
    let r = post(
        &server,
        json!({"script": "print('ran')\ndef main():\n    return 1\n",
               "files": {"data": "x", "data.csv": "y", "data/part1.csv": "z"}}),
    );
    assert_refused_before_running(&r, r#""data" is a file and also a directory of "data/part1.csv""#);
    assert_serving(server);
}

#[test]
fn a_chart_made_by_matplotlib_comes_back_as_a_png() {
    let server = Server::shared();
    let r = post(
        &server,
        json!({"script": "import pandas as pd\nimport matplotlib.pyplot as plt\n\ndef main():\n    df = pd.read_csv('sales.csv')\n    ax = df.plot(x='month', y='total')\n    ax.figure.savefig('chart.png')\n    return {'rows': len(df), 'total': df['total'].sum()}\n",
               "files": {"sales.csv": "month,total\n1,10\n2,15\n3,12\n"},
               "collect": ["*.png"]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!(body["result"], json!({"rows": 3, "total": 37}));
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["files", "result", "stdout"], "{body}");
    let chart = &body["files"]["chart.png"];
    assert_eq!(chart["media_type"], "image/png");
    let png = unb64(chart["base64"].as_str().unwrap());
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(chart["size"], png.len());
    assert!(png.len() > 1000, "a real chart: {} bytes", png.len());
    assert_eq!(body["files"].as_object().unwrap().len(), 1);
}

#[test]
fn collect_matches_patterns_and_never_follows_links() {
    let server = Server::shared_cold();
    let script = r#"import os
def main():
    os.makedirs('out/deep/er')
    for name in ['a.csv', 'out/b.csv', 'out/deep/c.csv', 'out/deep/er/d.csv', 'notes.txt', 'out/x.json']:
        with open(name, 'w') as f:
            f.write(name)
    os.symlink('/etc/passwd', 'passwd.csv')
    os.symlink('/etc', 'out/etc')
    os.mkdir('dir.csv')
    os.mkfifo('fifo.csv')
    os.link('a.csv', 'hard.csv')
    return 'done'
"#;
    let r = post(
        &server,
        json!({"script": script, "collect": ["*.csv", "out/**/*.csv", "out/*.json", "nothing*"]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let files = r.json()["files"].clone();
    let mut names: Vec<String> = files.as_object().unwrap().keys().cloned().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "a.csv",
            "hard.csv",
            "out/b.csv",
            "out/deep/c.csv",
            "out/deep/er/d.csv",
            "out/x.json"
        ],
        "{files}"
    );
    assert_eq!(
        unb64(files["out/deep/c.csv"]["base64"].as_str().unwrap()),
        b"out/deep/c.csv"
    );
    assert_eq!(files["out/x.json"]["media_type"], "application/json");
    assert_eq!(files["a.csv"]["size"], 5);
    // `./` and a trailing `/` are glob's own spellings; compressed files say so.
    let r = post(
        &server,
        json!({"script": "import gzip, os\ndef main():\n    os.mkdir('out')\n    gzip.open('data.csv.gz', 'wt').write('a,b\\n')\n    open('out/t.csv', 'w').write('t')\n",
               "collect": ["./*.gz", "./out/*.csv", "out/"]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let files = r.json()["files"].clone();
    let mut names: Vec<String> = files.as_object().unwrap().keys().cloned().collect();
    names.sort();
    assert_eq!(names, ["data.csv.gz", "out/t.csv"], "{files}");
    assert_eq!(files["data.csv.gz"]["media_type"], "application/gzip");
    assert_eq!(
        &unb64(files["data.csv.gz"]["base64"].as_str().unwrap())[..2],
        b"\x1f\x8b"
    );
    // Nothing matched: an empty object; no collect: no files key at all.
    let r = post(
        &server,
        json!({"script": "def main():\n    return 1\n", "collect": ["*.png"]}),
    );
    assert_eq!(r.json(), json!({"result": 1, "stdout": "", "files": {}}));
    let r = server.execute("def main():\n    open('x.png', 'w').write('x')\n    return 1\n");
    assert_eq!(r.json(), json!({"result": 1, "stdout": ""}));
}

#[test]
fn bad_collect_patterns_are_refused() {
    let server = Server::shared_cold();
    for pattern in ["/etc/*", "../*", "a/../../*", "", "./", "x\u{0}"] {
        let r = post(
            &server,
            json!({"script": "def main():\n    return 1\n", "collect": [pattern]}),
        );
        assert_eq!(
            (r.status, r.kind()),
            (400, "invalid_request".to_string()),
            "{pattern:?}: {}",
            r.text()
        );
    }
    let r = post(
        &server,
        json!({"script": "def main():\n    return 1\n", "collect": "*.png"}),
    );
    assert_eq!(r.kind(), "invalid_request");
}

#[test]
fn collected_files_count_against_the_result_cap() {
    let server = Server::start_with(&[("POOL_SIZE", "0"), ("MAX_RESULT_BYTES", "100000")]);
    let r = post(
        &server,
        json!({"script": "def main():\n    open('big.bin', 'wb').write(b'x' * 200000)\n    return 1\n", "collect": ["*.bin"]}),
    );
    assert_eq!(
        (r.status, r.kind()),
        (400, "result_too_large".to_string()),
        "{}",
        r.text()
    );
    let r = post(
        &server,
        json!({"script": "def main():\n    open('small.bin', 'wb').write(b'x' * 1000)\n    return 'y' * 90000\n", "collect": ["*.bin"]}),
    );
    assert_eq!(r.status, 200, "value and file fit together: {}", r.text().len());
    // Too many files is said plainly too.
    let r = post(
        &server,
        json!({"script": "def main():\n    for i in range(150):\n        open(f'f{i}.txt', 'w').close()\n    return 1\n", "collect": ["*.txt"]}),
    );
    assert_eq!(r.kind(), "result_too_large", "{}", r.text());
    assert_serving(&server);
}

#[test]
fn include_adds_usage_and_stderr_and_nothing_else() {
    let server = Server::shared();
    let script = "import sys\ndef main():\n    sys.stderr.write('warn\\n')\n    x = bytearray(50 * 1024 * 1024)\n    return sum(i for i in range(200000))\n";
    let r = post(&server, json!({"script": script, "include": ["usage", "stderr"]}));
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["result", "stderr", "stdout", "usage"]);
    assert_eq!(body["stderr"], "warn\n");
    let usage = &body["usage"];
    assert_eq!(usage.as_object().unwrap().len(), 3, "{usage}");
    assert!(usage["wall_ms"].as_f64().unwrap() > 0.0, "{usage}");
    assert!(usage["cpu_ms"].as_f64().unwrap() > 0.0, "{usage}");
    let peak = usage["peak_memory_bytes"].as_u64().unwrap();
    assert!(peak >= 50 * 1024 * 1024 && peak < 512 * 1024 * 1024, "{usage}");
    // Without include: exactly result and stdout.
    let r = server.execute(script);
    assert_eq!(r.json().as_object().unwrap().len(), 2, "{}", r.text());
    // An unknown name is refused.
    let r = post(&server, json!({"script": script, "include": ["usage", "env"]}));
    assert_eq!((r.status, r.kind()), (400, "invalid_request".to_string()));
    assert!(r.text().contains("env"));
}

#[test]
fn errors_after_the_start_carry_usage() {
    let server = Server::start_with(&[("POOL_SIZE", "0"), ("TIMEOUT_SECONDS", "2")]);
    for (script, kind) in [
        ("def main():\n    raise ValueError('x')\n", "runtime_error"),
        ("import os\ndef main():\n    os._exit(3)\n", "exited"),
        ("def main():\n    while True:\n        pass\n", "timeout"),
        ("def main():\n    return {1}\n", "result_not_json"),
    ] {
        // The endless one asks for a short limit: its usage is what matters, not how long.
        let limit = if kind == "timeout" { 0.5 } else { 2.0 };
        let r = server.post_json("/execute", &json!({"script": script, "timeout_seconds": limit}));
        assert_eq!(r.kind(), kind, "{}", r.text());
        let usage = &r.json()["usage"];
        assert!(usage["wall_ms"].as_f64().is_some(), "{kind}: {}", r.text());
        assert!(usage["cpu_ms"].as_f64().is_some(), "{kind}: {}", r.text());
        assert!(usage["peak_memory_bytes"].as_u64().is_some(), "{kind}: {}", r.text());
    }
    // Refused before the start: no usage.
    let r = server.execute("def main(:\n");
    assert!(r.json().get("usage").is_none(), "{}", r.text());
}

#[test]
fn health_lists_the_packages_a_script_can_import() {
    let server = Server::shared_cold();
    let health = server.get("/health").json();
    let packages = health["packages"].as_object().unwrap_or_else(|| panic!("{health}"));
    for name in ["numpy", "pandas", "matplotlib"] {
        let version = packages
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{name} missing: {health}"));
        assert!(version.chars().next().unwrap().is_ascii_digit(), "{name} {version}");
    }
    // And they really are importable at those versions.
    let r = server.execute("import numpy, pandas, matplotlib\ndef main():\n    return [numpy.__version__, pandas.__version__, matplotlib.__version__]\n");
    assert_eq!(
        r.result(),
        json!([packages["numpy"], packages["pandas"], packages["matplotlib"]])
    );
    // The list is every distribution a script finds installed, no more, no fewer (no
    // packaging tools left behind either).
    let r = server.execute(
        "import importlib.metadata as m\ndef main():\n    return {d.metadata['Name'].lower().replace('_', '-'): d.version for d in m.distributions()}\n",
    );
    assert_eq!(r.result(), health["packages"], "{}", r.text());
    for tool in ["pip", "setuptools", "wheel"] {
        let r = server.execute(&format!("def main():\n    import {tool}\n"));
        assert_eq!(
            r.json()["exception"]["type"],
            "ModuleNotFoundError",
            "{tool}: {}",
            r.text()
        );
    }
}
