//! Python as users write it, against the real service and sandbox: argv, the working
//! directory, awaitables behind decorators, huge or undecodable exception messages, numpy and
//! pandas results, and matplotlib in a jail. Each case runs on the shared server, and under the pool strategy
//! in a cold jail as well.

use crate::common;
use common::Server;
use serde_json::{json, Value};

/// The shared server, and one that starts a jail for every execution where that is another
/// (under the pool strategy: the pool's warm jails and cold ones; zygotes are only the one).
fn servers() -> Vec<&'static Server> {
    let (shared, cold) = (Server::shared(), Server::shared_cold());
    if std::ptr::eq(shared, cold) {
        vec![shared]
    } else {
        vec![shared, cold]
    }
}

#[test]
fn argv_is_the_script_and_argparse_works() {
    let script = r#"import argparse, sys
def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    return {"argv": sys.argv, "orig": sys.orig_argv[1:], "rows": args.rows, "verbose": args.verbose}
"#;
    for server in servers() {
        let r = server.execute(script);
        assert_eq!(
            r.result(),
            json!({"argv": ["<script>"], "orig": ["<script>"], "rows": 10, "verbose": false})
        );
        let text = r.text();
        assert!(!text.contains("warm") && !text.contains("cold"), "{text}");
    }
}

#[test]
fn the_working_directory_is_fresh_and_private_under_tmp() {
    let script = r#"import os, stat
def main():
    cwd = os.getcwd()
    open("mine.txt", "w").write("x")
    return [os.path.dirname(cwd), cwd != "/tmp", oct(stat.S_IMODE(os.stat(cwd).st_mode)), sorted(os.listdir("."))]
"#;
    for server in servers() {
        assert_eq!(
            server.execute(script).result(),
            json!(["/tmp", true, "0o700", ["mine.txt"]])
        );
    }
}

/// stdout as scripts use it: reconfigured or rewrapped (a pipe, not seekable, under every
/// strategy), written by C through libc's stdio, and kept line by line up to a timeout, a
/// kill or `os._exit` that Python's own buffer would not have survived.
#[test]
fn stdout_behaves_as_a_pipe_and_keeps_what_was_printed() {
    let ok_cases = [
        (
            "import sys\nsys.stdout.reconfigure(encoding='utf-8')\ndef main():\n    print('\\u00e9')\n    return [sys.stdout.seekable(), sys.stdin.read()]\n",
            json!([false, ""]),
            "\u{e9}\n",
        ),
        (
            "import io, sys\nsys.stdout = io.TextIOWrapper(sys.stdout.buffer, encoding='utf-8')\ndef main():\n    print('wrapped')\n    return 1\n",
            json!(1),
            "wrapped\n",
        ),
        (
            "import ctypes\ndef main():\n    ctypes.CDLL(None).printf(b'from C %d\\n', 42)\n    return 1\n",
            json!(1),
            "from C 42\n",
        ),
        // A name os.fsdecode made of undecodable bytes prints as those bytes, as under
        // `python script.py` in a UTF-8 locale; the answer shows each as U+FFFD, in stdout
        // and in the result (JSON parsers refuse the lone surrogate Python's json writes).
        (
            "import os\ndef main():\n    name = os.fsdecode(b'caf\\xe9.csv')\n    print(name)\n    return [name, {name: '\u{1f600}'}]\n",
            json!(["caf\u{fffd}.csv", {"caf\u{fffd}.csv": "\u{1f600}"}]),
            "caf\u{fffd}.csv\n",
        ),
        // In a numpy array too (os.listdir's names, as an array); a pair of surrogates is one
        // character to JSON, as in the text json.dumps writes.
        (
            "import os\nimport numpy as np\ndef main():\n    name = os.fsdecode(b'caf\\xe9.csv')\n    return [np.array([name]), chr(0xD83D) + chr(0xDE00)]\n",
            json!([["caf\u{fffd}.csv"], "\u{1f600}"]),
            "",
        ),
    ];
    for server in servers() {
        for (script, result, stdout) in &ok_cases {
            let r = server.execute(script);
            assert_eq!(r.json(), json!({"result": result, "stdout": stdout}), "{script}");
        }
        let r = common::Client::new(server).post(&json!({
            "script": "import time\nprint('before')\ndef main():\n    print('in main')\n    time.sleep(60)\n",
            "timeout_seconds": 0.5,
        }));
        assert_eq!((r.status, r.kind().as_str()), (400, "timeout"), "{}", r.text());
        assert_eq!(r.json()["stdout"], "before\nin main\n");
        let r = server
            .execute("import os\ndef main():\n    print('partial', end='')\n    print(' line')\n    os._exit(3)\n");
        assert_eq!((r.status, r.kind().as_str()), (400, "exited"), "{}", r.text());
        assert_eq!(r.json()["stdout"], "partial line\n");
    }
}

#[test]
fn an_async_main_behind_a_plain_decorator_is_awaited() {
    let script = r#"import asyncio, functools
def logged(f):
    @functools.wraps(f)
    def inner(*args, **kwargs):
        return f(*args, **kwargs)
    return inner

@logged
async def main():
    await asyncio.sleep(0)
    return "awaited"
"#;
    for server in servers() {
        let r = server.execute(script);
        assert_eq!(r.text(), r#"{"result":"awaited","stdout":""}"#);
    }
}

#[test]
fn main_with_a_parameter_gets_none_without_input() {
    let server = Server::shared();
    assert_eq!(
        server.execute("def main(data):\n    return data\n").result(),
        Value::Null
    );
    // With a default too: API.md calls it with None when the request has no input.
    assert_eq!(server.execute("def main(n=3):\n    return n\n").result(), Value::Null);
}

#[test]
fn a_huge_exception_message_is_a_capped_runtime_error() {
    let server = Server::shared();
    let r = server.execute("def main():\n    raise ValueError('m' * 5_000_000)\n");
    assert_eq!(
        (r.status, r.kind().as_str()),
        (400, "runtime_error"),
        "{}",
        &r.text()[..300]
    );
    assert!(r.body.len() < 512 * 1024, "{} bytes", r.body.len());
    let body = r.json();
    assert_eq!(body["exception"]["type"], "ValueError");
    let message = body["exception"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("mmmm") && message.contains("...[truncated "),
        "{}",
        &message[..100]
    );
    assert!(body["error"].as_str().unwrap().starts_with("ValueError: mmm"));
    assert!(body["traceback"].as_str().unwrap().contains("...[truncated "));
}

#[test]
fn an_exception_naming_an_undecodable_file_is_a_runtime_error() {
    // os.listdir gives such names lone surrogates (surrogateescape); the error still arrives,
    // each undecodable byte a U+FFFD as in stdout.
    let script = "import os\ndef main():\n    open(os.fsdecode(b'caf\\xe9.csv'), 'w').close()\n    for name in os.listdir('.'):\n        raise ValueError('cannot parse ' + name)\n";
    for server in servers() {
        let r = server.execute(script);
        assert_eq!((r.status, r.kind().as_str()), (400, "runtime_error"), "{}", r.text());
        let body = r.json();
        assert_eq!(
            body["exception"],
            json!({"type": "ValueError", "message": "cannot parse caf\u{fffd}.csv"})
        );
        assert_eq!(body["error"], "ValueError: cannot parse caf\u{fffd}.csv");
        assert!(
            body["traceback"].as_str().unwrap().contains("line 5, in main"),
            "{body}"
        );
    }
}

#[test]
fn multiprocessing_works_with_every_start_method() {
    // spawn and forkserver children import the script's functions by module name, as plain
    // Python's import `__main__` from its file; its guarded block runs once, as there.
    for server in servers() {
        for method in ["fork", "spawn", "forkserver"] {
            let script = format!(
                "import multiprocessing as mp\nfrom concurrent.futures import ProcessPoolExecutor\nprint('top')\ndef square(x):\n    return x * x\ndef main():\n    with mp.get_context('{method}').Pool(2) as pool:\n        squares = pool.map(square, range(5))\n    with ProcessPoolExecutor(1, mp_context=mp.get_context('{method}')) as ex:\n        return [squares, ex.submit(square, 7).result()]\nif __name__ == '__main__':\n    print('guarded')\n"
            );
            let r = server.execute(&script);
            assert_eq!(r.status, 200, "{method}: {}", r.text());
            assert_eq!(r.result(), json!([[0, 1, 4, 9, 16], 49]), "{method}");
            assert!(
                !r.json()["stdout"].as_str().unwrap().contains("guarded"),
                "{method}: {}",
                r.text()
            );
        }
        // The children read the same text as main, whatever the script's coding declaration
        // said (the service receives text, not bytes).
        let script = "# -*- coding: latin-1 -*-\nimport multiprocessing as mp\nS = 'é€'\ndef f(_):\n    return S\ndef main():\n    with mp.get_context('spawn').Pool(1) as pool:\n        return [S, pool.map(f, [0])[0]]\n";
        assert_eq!(server.execute(script).result(), json!(["é€", "é€"]));
    }
}

/// `import __main__` is the script, as for `python script.py`: timeit's `from __main__ import`,
/// doctest.testmod() and unittest.main() find its names, and nothing of the sandbox's own
/// (the runner's or a zygote's module) is there to see. The script's `__name__` stays
/// `__script__`, so its guarded block does not run.
#[test]
fn the_main_module_is_the_script() {
    let script = r#"import doctest, io, timeit, unittest
import __main__

LIMIT = 5

def add(a, b):
    """
    >>> add(1, 2)
    3
    """
    return a + b

class AddTest(unittest.TestCase):
    def test_add(self):
        self.assertEqual(add(2, 2), 4)

def main():
    program = unittest.main(exit=False, argv=["tests"], testRunner=unittest.TextTestRunner(stream=io.StringIO()))
    names = sorted(name for name in vars(__main__) if not name.startswith("__"))
    return {
        "timeit": timeit.timeit("add(1, 2)", setup="from __main__ import add", number=3) > 0,
        "doctest": list(doctest.testmod()),
        "unittest": [program.result.testsRun, len(program.result.failures)],
        "globals": [__main__.LIMIT, __name__, names],
    }

if __name__ == "__main__":
    print("guarded")
"#;
    for server in servers() {
        let r = server.execute(script);
        assert_eq!(
            r.json(),
            json!({"result": {
                "timeit": true,
                "doctest": [0, 1],
                "unittest": [1, 0],
                "globals": [5, "__script__", ["AddTest", "LIMIT", "add", "doctest", "io", "main", "timeit", "unittest"]],
            }, "stdout": ""}),
            "{}",
            r.text()
        );
    }
}

#[test]
fn a_script_runs_as_python_script_py_runs_it() {
    // A byte order mark (an editor's) is skipped, and the script's own DeprecationWarnings
    // are shown, as `python script.py` does.
    let script =
        "\u{feff}import warnings\ndef main():\n    warnings.warn('old api', DeprecationWarning)\n    return 'ran'\n";
    for server in servers() {
        let r = server.post_json("/execute", &json!({"script": script, "include": ["stderr"]}));
        assert_eq!(r.status, 200, "{}", r.text());
        let body = r.json();
        assert_eq!(body["result"], "ran");
        assert!(
            body["stderr"].as_str().unwrap().contains("DeprecationWarning: old api"),
            "{body}"
        );
    }
}

#[test]
fn what_python_does_when_a_program_ends_happens_before_the_answer() {
    // Work that `python script.py` finishes at exit: a file written through a handle never
    // closed (here by pandas), a thread that is not a daemon, a job left in an executor, an
    // atexit function. A daemon thread is not waited for, as Python does not.
    let script = r#"import atexit, threading, time
from concurrent.futures import ThreadPoolExecutor
import pandas as pd
report = open('report.csv', 'w')
pool = ThreadPoolExecutor(1)
atexit.register(print, 'atexit ran')
def late():
    time.sleep(0.2)
    print('thread done')
def main():
    pd.DataFrame({'a': [1, 2]}).to_csv(report, index=False)
    threading.Thread(target=late).start()
    pool.submit(print, 'job ran')
    threading.Thread(target=time.sleep, args=(600,), daemon=True).start()
    return 'done'
"#;
    for server in servers() {
        let r = server.post_json("/execute", &json!({"script": script, "collect": ["*.csv"]}));
        assert_eq!(r.status, 200, "{}", r.text());
        let body = r.json();
        assert_eq!(body["result"], "done");
        let mut lines: Vec<&str> = body["stdout"].as_str().unwrap().lines().collect();
        lines.sort();
        assert_eq!(lines, ["atexit ran", "job ran", "thread done"], "{body}");
        assert_eq!(body["files"]["report.csv"]["base64"], "YQoxCjIK", "{body}");
        // "a\n1\n2\n"
    }
}

#[test]
fn globals_are_finalized_at_the_end_whatever_holds_the_main_module() {
    // multiprocessing takes `__main__` (the script) as `__mp_main__` too: the script's globals
    // are finalized all the same, an archive left open comes back whole.
    let script = r#"import multiprocessing, zipfile
archive = zipfile.ZipFile('out.zip', 'w')
archive.writestr('a.txt', 'hello')
class Goodbye:
    def __del__(self):
        print('finalized')
goodbye = Goodbye()
def main():
    return 1
"#;
    for server in servers() {
        let r = server.post_json("/execute", &json!({"script": script, "collect": ["*.zip"]}));
        assert_eq!(r.status, 200, "{}", r.text());
        let body = r.json();
        assert_eq!(body["stdout"], "finalized\n", "{body}");
        // A whole zip ends with its central directory's end record: "PK\5\6" and 18 bytes.
        let zip = common::decode(body["files"]["out.zip"]["base64"].as_str().unwrap_or_default());
        let end = zip.len().saturating_sub(22);
        assert_eq!(
            zip.get(end..end + 4),
            Some(&b"PK\x05\x06"[..]),
            "an incomplete zip: {body}"
        );
    }
}

#[test]
fn a_pool_left_open_in_a_global_ends_quietly() {
    // As after `python script.py`: the answer, and nothing on stderr from the pool's end.
    let script = "import multiprocessing as mp\ndef square(x):\n    return x * x\npool = None\ndef main():\n    global pool\n    pool = mp.Pool(2)\n    return sum(pool.map(square, range(10)))\n";
    for server in servers() {
        let r = server.post_json("/execute", &json!({"script": script, "include": ["stderr"]}));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(
            (&r.json()["result"], &r.json()["stderr"]),
            (&json!(285), &json!("")),
            "{}",
            r.text()
        );
    }
}

#[test]
fn python_in_a_subprocess_is_the_sandboxs_own_with_its_packages() {
    // `python3` and `python` on PATH, as a script's subprocess finds them, are the interpreter
    // running the script (a virtualenv's, on a development machine), not another one without
    // numpy and pandas.
    let script = r#"import subprocess, sys
def main():
    code = 'import sys, numpy, pandas; print(sys.executable)'
    return [sys.executable] + [subprocess.run([name, '-c', code], capture_output=True, text=True).stdout.strip() for name in ('python3', 'python')]
"#;
    for server in servers() {
        let r = server.execute(script);
        assert_eq!(r.status, 200, "{}", r.text());
        let paths = r.result();
        assert_eq!(paths[1], paths[0], "{paths}");
        assert_eq!(
            paths[2].as_str().map(|p| p.rsplit_once('/').map(|(dir, _)| dir)),
            paths[0].as_str().map(|p| p.rsplit_once('/').map(|(dir, _)| dir)),
            "{paths}"
        );
    }
}

#[test]
fn numpy_and_pandas_results_just_work() {
    let cases = [
        ("np.int64(3)", "3"),
        ("np.float64(0.25)", "0.25"),
        ("np.bool_(False)", "false"),
        ("np.arange(4).reshape(2, 2)", "[[0, 1], [2, 3]]"),
        ("pd.DataFrame({'x': [1, 2, 3]})['x'].sum()", "6"),
        (
            "{'mean': pd.Series([1.0, 2.0]).mean(), 'n': len(pd.Series([1]))}",
            r#"{"mean": 1.5, "n": 1}"#,
        ),
        // numpy scalars as keys, as json.dumps has Python's.
        (
            "dict(zip(*np.unique(np.array([3, 3, 7]), return_counts=True)))",
            r#"{"3": 2, "7": 1}"#,
        ),
        (
            "{np.bool_(True): [{np.float64(0.5): 'x'}]}",
            r#"{"true": [{"0.5": "x"}]}"#,
        ),
        (
            "pd.Series(['a', 'b', 'a']).value_counts().to_dict()",
            r#"{"a": 2, "b": 1}"#,
        ),
    ];
    // All in one script (each pandas execution costs a jail its import of pandas).
    let exprs: Vec<&str> = cases.iter().map(|(expr, _)| *expr).collect();
    let texts: Vec<&str> = cases.iter().map(|(_, text)| *text).collect();
    let script = format!(
        "import numpy as np\nimport pandas as pd\ndef main():\n    return [{}]\n",
        exprs.join(", ")
    );
    for server in servers() {
        let r = server.execute(&script);
        assert_eq!(r.text(), format!(r#"{{"result":[{}],"stdout":""}}"#, texts.join(", ")));
    }
}

#[test]
fn nan_stays_not_json_and_a_dataframe_gets_a_hint() {
    let server = Server::shared();
    for expr in ["np.float64('nan')", "np.array([1.0, np.inf])"] {
        let r = server.execute(&format!("import numpy as np\ndef main():\n    return {expr}\n"));
        assert_eq!(r.kind(), "result_not_json", "{expr}");
    }
    let r = server.execute("import pandas as pd\ndef main():\n    return pd.DataFrame({'x': [1]})\n");
    assert_eq!((r.status, r.kind().as_str()), (400, "result_not_json"));
    let message = r.json()["error"].as_str().unwrap().to_string();
    assert!(
        message.contains("DataFrame") && message.contains(".to_dict()"),
        "{message}"
    );
    // A Series is told only what a Series has (`Series.to_dict('records')` raises).
    let r = server.execute("import pandas as pd\ndef main():\n    return pd.Series([1])\n");
    assert_eq!((r.status, r.kind().as_str()), (400, "result_not_json"));
    let message = r.json()["error"].as_str().unwrap().to_string();
    assert!(
        message.contains("Series") && message.contains(".tolist()") && !message.contains("'records'"),
        "{message}"
    );
}

/// matplotlib draws headless, and a jail finds the install-time font cache instead of building
/// one (matplotlib logs which at DEBUG): imported by the script itself in a plain jail here.
#[test]
fn matplotlib_in_a_jail_uses_the_prebuilt_font_cache() {
    let script = r#"import importlib, io, logging, os
seen = []
class Keep(logging.Handler):
    def emit(self, record):
        seen.append(record.getMessage())
logging.getLogger("matplotlib").addHandler(Keep())
logging.getLogger("matplotlib").setLevel(logging.DEBUG)

def main():
    plt = importlib.import_module("matplotlib.pyplot")
    fig, ax = plt.subplots()
    ax.plot([1, 2, 3], [3, 1, 2])
    ax.set_title("prices")
    out = io.BytesIO()
    fig.savefig(out, format="png")
    cache = [m for m in seen if "fontManager" in m or "font cache" in m]
    return {"cache": cache, "backend": plt.get_backend().lower(), "png": out.getvalue()[:4].hex()}
"#;
    for server in servers() {
        let r = server.execute(script);
        let result = r.result();
        assert_eq!(result["backend"], "agg");
        assert_eq!(result["png"], "89504e47");
        let cache = result["cache"].as_array().unwrap();
        assert_eq!(cache.len(), 1, "{cache:?}");
        assert!(
            cache[0]
                .as_str()
                .unwrap()
                .starts_with("Using fontManager instance from /tmp/"),
            "{cache:?}"
        );
    }
}

/// A script that imports pyplot the usual way (a chart jail): it draws, and nothing about
/// the font cache or an unwritable config directory shows on stderr.
#[test]
fn matplotlib_imported_as_usual_draws_without_warnings() {
    // The cache a jail uses is the install-time one, not one matplotlib rebuilt (which it
    // would write back with different formatting).
    let script = r#"import io, os, sys
import matplotlib.pyplot as plt
from matplotlib import font_manager

def main():
    fig, ax = plt.subplots()
    ax.bar(["a", "b"], [1, 2])
    out = io.BytesIO()
    fig.savefig(out, format="png")
    name = "fontlist-v%s.json" % font_manager.FontManager.__version__
    used = open(os.path.join(os.environ["MPLCONFIGDIR"], name), "rb").read()
    built = open(os.path.join(sys.prefix, "share", "python-executor", "matplotlib", name), "rb").read()
    raise RuntimeError("png of %d bytes, prebuilt cache used: %s, backend %s" % (len(out.getvalue()), used == built, plt.get_backend()))
"#;
    for server in servers() {
        let r = server.execute(script);
        assert_eq!(r.kind(), "runtime_error", "{}", r.text());
        let body = r.json();
        assert!(
            body["error"].as_str().unwrap().starts_with("RuntimeError: png of "),
            "{body}"
        );
        // The same backend name however the jail was made (a zygote's matplotlib too).
        assert!(body["error"].as_str().unwrap().ends_with(", backend Agg"), "{body}");
        let stderr = body["stderr"].as_str().unwrap();
        assert!(!stderr.contains("font cache"), "{stderr}");
        assert!(!stderr.contains("MPLCONFIGDIR"), "{stderr}");
        assert!(!stderr.contains("Matplotlib"), "{stderr}");
    }
}
