//! Data in and out at the jail's level, against the real sandbox (nsjail, the runner as PID 1),
//! through the library's launcher: files written before the script runs, `input`, and
//! `collect` read by the runner after every other process in the jail is dead, with hostile
//! files planted for it. (The HTTP fields are tested in the contract and hostile suites.)

use crate::common;
use common::decode;

use python_executor::config::Settings;
use python_executor::jail::probe::probe;
use python_executor::jail::{
    Ending, Execution, FileContent, Flavour, InputFile, Jail, JailSpec, Launcher, Report, RunRequest,
};
use serde_json::value::RawValue;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(20);

struct Sandbox {
    launcher: python_executor::jail::nsjail::Nsjail,
    settings: Settings,
}

impl Sandbox {
    async fn new() -> Sandbox {
        let settings = Settings::from_iter(common::sandbox_env()).expect("settings");
        let (launcher, _) = probe(&settings).await.expect("the sandbox works here");
        Sandbox { launcher, settings }
    }

    async fn run(&self, request: RunRequest<'_>) -> Execution {
        let spec = JailSpec::cold(Flavour::Plain, self.settings.limits.memory_bytes, TIMEOUT);
        let jail = self.launcher.start(spec).await.expect("a jail starts");
        jail.run(request, TIMEOUT, python_executor::jail::never_stopped()).await
    }

    fn request<'a>(&self, script: &'a str) -> RunRequest<'a> {
        RunRequest::new(script, self.settings.limits.max_result_bytes)
    }
}

fn value(
    execution: &Execution,
) -> (
    serde_json::Value,
    &std::collections::BTreeMap<String, python_executor::jail::CollectedFile>,
) {
    match &execution.ending {
        Ending::Reported(Report::Value {
            value,
            files: Some(files),
            usage,
        }) => {
            assert!(usage.wall_ms > 0.0 && usage.peak_memory_bytes > 1 << 20, "{usage:?}");
            (serde_json::from_str(value.get()).unwrap(), files)
        }
        other => panic!("{other:?} stderr: {}", execution.stderr.text()),
    }
}

fn error_kind(execution: &Execution) -> (String, String) {
    match &execution.ending {
        Ending::Reported(Report::Error { kind, fields, usage }) => {
            assert!(usage.is_some(), "errors carry usage");
            (kind.clone(), fields["message"].as_str().unwrap_or("").to_string())
        }
        other => panic!("{other:?} stderr: {}", execution.stderr.text()),
    }
}

#[test]
fn data_in_and_out_of_a_real_jail() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let sandbox = Sandbox::new().await;

        // Files in, input, and a chart-like file out.
        let script = r#"import os
def main(options):
    rows = open("in/data.csv").read().splitlines()
    with open("chart.png", "wb") as f:
        f.write(b"\x89PNG" + open("raw.bin", "rb").read())
    os.makedirs("out/deep")
    open("out/deep/table.csv", "w").write("\n".join(rows[: options["n"]]))
    open("skipped.txt", "w").write("not asked for")
    return {"rows": len(rows), "n": options["n"]}
"#;
        let mut request = sandbox.request(script);
        request.input = Some(RawValue::from_string(r#"{"n": 2}"#.into()).unwrap());
        request.files = vec![
            InputFile {
                path: "in/data.csv".into(),
                content: FileContent::Text("a,b\n1,é\n3,4\n".into()),
            },
            InputFile {
                path: "raw.bin".into(),
                content: FileContent::Base64("AAH/".into()),
            },
        ];
        request.collect = Some(vec!["*.png".into(), "out/**".into()]);
        let execution = sandbox.run(request).await;
        let (result, files) = value(&execution);
        assert_eq!(result, serde_json::json!({"rows": 3, "n": 2}));
        assert_eq!(files.keys().collect::<Vec<_>>(), ["chart.png", "out/deep/table.csv"]);
        assert_eq!(decode(&files["chart.png"].base64), b"\x89PNG\x00\x01\xff");
        assert_eq!(files["chart.png"].size, 7);
        assert_eq!(files["chart.png"].media_type, "image/png");
        assert_eq!(decode(&files["out/deep/table.csv"].base64), "a,b\n1,é".as_bytes());
        assert_eq!(files["out/deep/table.csv"].media_type, "text/csv");

        // Planted for collect: symlinks out, a FIFO, a hard link, a name that is not UTF-8, a
        // file outside the working directory, and a process still appending to a file.
        let script = r#"import os, time
def main():
    os.symlink("/etc/passwd", "passwd.txt")
    os.symlink("/etc", "etc")
    os.symlink("/tmp", "tmp")
    os.mkfifo("pipe.txt")
    open("own.txt", "w").write("mine")
    os.link("own.txt", "hard.txt")
    os.close(os.open(b"bad\xff.txt", os.O_CREAT | os.O_WRONLY))
    open("/tmp/outside.txt", "w").write("outside")
    if os.fork() == 0:
        with open("grow.txt", "ab", buffering=0) as f:
            while True:
                f.write(b"y" * 4096)
                time.sleep(0.001)
    time.sleep(0.3)
    return "planted"
"#;
        let mut request = sandbox.request(script);
        request.collect = Some(vec!["**/*".into(), "etc/*".into(), "tmp/*".into()]);
        let execution = sandbox.run(request).await;
        let (result, files) = value(&execution);
        assert_eq!(result, "planted");
        assert_eq!(
            files.keys().collect::<Vec<_>>(),
            ["grow.txt", "hard.txt", "own.txt"],
            "only regular files inside the working directory"
        );
        assert_eq!(decode(&files["hard.txt"].base64), b"mine");
        let grown = &files["grow.txt"];
        assert_eq!(decode(&grown.base64).len() as u64, grown.size);
        assert!(grown.size > 0 && grown.size % 4096 == 0, "{}", grown.size);

        // Thousands of tiny files matching: bounded, and named by count.
        let script = r#"import os
def main():
    for d in range(10):
        os.mkdir("d%d" % d)
        for i in range(300):
            os.close(os.open("d%d/%d" % (d, i), os.O_CREAT | os.O_WRONLY))
    return "many"
"#;
        let mut request = sandbox.request(script);
        request.collect = Some(vec!["**/*".into()]);
        request.max_files = 100;
        let (kind, message) = error_kind(&sandbox.run(request).await);
        assert_eq!(kind, "result_too_large");
        assert!(message.contains("3000 files match"), "{message}");

        // Files and value share the result cap.
        let script = "def main():\n    open('big.bin', 'wb').write(b'x' * 60000)\n    return 'v'\n";
        let mut request = sandbox.request(script);
        request.result_limit_bytes = 50_000;
        request.collect = Some(vec!["*.bin".into()]);
        let (kind, _) = error_kind(&sandbox.run(request).await);
        assert_eq!(kind, "result_too_large");

        // Input for a main that takes none, behind a decorator the validator cannot see through.
        let script = "import functools\ndef deco(f):\n    @functools.wraps(f)\n    def inner(*a):\n        return f(*a)\n    return inner\n@deco\ndef main():\n    return 1\n";
        let mut request = sandbox.request(script);
        request.input = Some(RawValue::from_string("[1]".into()).unwrap());
        let (kind, message) = error_kind(&sandbox.run(request).await);
        assert_eq!(kind, "invalid_request");
        assert!(message.contains("main() takes no argument"), "{message}");

        // A hostile path the host let through is refused by the runner before the script runs.
        let mut request = sandbox.request("print('ran')\ndef main():\n    return 1\n");
        request.files = vec![InputFile {
            path: "../escape.txt".into(),
            content: FileContent::Text("x".into()),
        }];
        let execution = sandbox.run(request).await;
        assert_eq!(error_kind(&execution).0, "invalid_request");
        assert_eq!(execution.stdout.text(), "");
    });
}
