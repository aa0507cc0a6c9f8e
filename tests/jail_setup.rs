//! The jail as ordinary programs expect it: /dev/stdout and friends write to the captured
//! output, and the service gives full isolation wherever its checkout lives.

use crate::common;

use common::Server;
use serde_json::json;

/// Jails load the runner compiled once by the start-up probe (a tenth of compiling it in each
/// jail): it must stay within what one command-line argument can carry.
#[test]
fn jails_get_the_runner_compiled() {
    let server = Server::start_cold();
    assert_eq!(server.execute("def main():\n    return 1\n").result(), json!(1));
    let not_compiled: Vec<_> = server
        .log_lines()
        .into_iter()
        .filter(|l| l["message"].as_str().is_some_and(|m| m.contains("compiled runner")))
        .collect();
    assert!(not_compiled.is_empty(), "{not_compiled:?}");
}

#[test]
fn dev_stdout_and_friends_write_to_the_captured_output() {
    let server = Server::start();
    let r = server.execute(
        r#"
import logging, os, subprocess, sys
def main():
    handler = logging.FileHandler("/dev/stdout")
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log = logging.getLogger("user")
    log.addHandler(handler)
    log.warning("logged to /dev/stdout")
    handler.close()
    with open("/dev/stdout", "w") as f:
        f.write("opened /dev/stdout\n")
    for path in ("/dev/fd/1", "/proc/self/fd/1"):
        with open(path, "w") as f:
            f.write("opened %s\n" % path)
    subprocess.run(["sh", "-c", "echo hi > /dev/stdout"], check=True)
    # stdin is empty, not the service's request pipe.
    with open("/dev/stdin") as f:
        stdin = f.read()
    readable = []
    for path in ("/dev/stdout", "/dev/stderr"):
        try:
            open(path).close()
            readable.append(path)
        except OSError:
            pass
    return [stdin, readable, sorted(os.listdir("/dev/fd"))[:3]]
"#,
    );
    let body = r.json();
    assert_eq!(r.status, 200, "{}", r.text());
    // The output pipes may be opened for writing only: nothing but the service reads them.
    assert_eq!(body["result"], json!(["", [], ["0", "1", "2"]]), "{body}");
    assert_eq!(
        body["stdout"],
        "WARNING logged to /dev/stdout\nopened /dev/stdout\nopened /dev/fd/1\nopened /proc/self/fd/1\nhi\n",
        "{body}"
    );

    // stderr comes back with an error answer.
    let r = server.execute(
        "import subprocess\ndef main():\n    with open('/dev/stderr', 'w') as f:\n        f.write('opened /dev/stderr\\n')\n    subprocess.run(['sh', '-c', 'echo there > /dev/stderr'], check=True)\n    raise ValueError('after writing to stderr')\n",
    );
    let body = r.json();
    let stderr = body["stderr"].as_str().unwrap_or_default();
    assert!(stderr.starts_with("opened /dev/stderr\nthere\n"), "{body}");
}

/// A virtualenv of the host's Python 3.11 at `venv` (no packages: the plain flavour only);
/// returns its interpreter.
fn host_python_venv(venv: &std::path::Path) -> std::path::PathBuf {
    let made = std::process::Command::new("/usr/bin/python3.11")
        .args(["-m", "venv", "--without-pip"])
        .arg(venv)
        .status()
        .expect("run python3.11 -m venv");
    assert!(made.success());
    venv.join("bin/python3")
}

/// A checkout in a directory only its owner may enter (a clone under /root, a `mktemp -d`):
/// the jail's uid cannot traverse it, yet the user-namespace jail still gets its virtualenv.
#[test]
fn a_virtualenv_in_a_private_directory_keeps_the_user_namespace() {
    use std::os::unix::fs::PermissionsExt;
    let private = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("private-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&private);
    std::fs::create_dir_all(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let python = host_python_venv(&private.join("venv"));
    let python = python.to_str().unwrap();
    // The default choice (auto): a fall back to no user namespace would pass silently.
    let server = Server::start_with(&[("SANDBOX_PYTHON", python), ("POOL_SIZE", "0")]);
    let health = server.get("/health").json();
    assert_eq!(health["isolation"]["user_namespace"], true, "{health}");
    let r = server.execute("import os, sys\ndef main():\n    return [sys.prefix, os.getuid()]\n");
    assert_eq!(r.result(), json!(["/opt/venv", 65534]));
    // Every configuration stronger than the one in use was skipped for a reason, and the
    // fall back is a WARNING that gives each reason (on this host, maybe cgroup v2).
    let logs = server.log_lines();
    let ready = logs
        .iter()
        .find(|l| l["message"] == "sandbox ready")
        .expect("sandbox ready logged");
    let skipped = ready["skipped"].as_array().cloned().unwrap_or_default();
    assert!(
        skipped
            .iter()
            .all(|s| !s.as_str().unwrap_or("").starts_with("with user namespace")),
        "{ready}"
    );
    let warnings: Vec<_> = logs.iter().filter(|l| l["severity"] == "WARNING").collect();
    if skipped.is_empty() {
        assert!(warnings.is_empty(), "{warnings:?}");
    } else {
        assert!(
            warnings.iter().any(|w| w["skipped"].as_array() == Some(&skipped)),
            "no WARNING for the fall back: {warnings:?}"
        );
    }
    drop(server);
    std::fs::remove_dir_all(&private).unwrap();
}

/// With rlimits only, a request's lowered memory limit under which Python cannot start is a
/// 400 `memory_limit` (raise `memory_mb`), not a 503 asking to retry what can never succeed.
/// The host's Python 3.11 starts within 32 MiB even with rlimits only, so this interpreter is
/// made to need more to start: its virtualenv has a 16 MiB `.pth` line, which `site` reads
/// whole at every start (a MemoryError within 32 MiB of address space; it fits in 128).
#[test]
fn a_memory_limit_too_low_for_python_to_start_is_a_memory_limit_answer() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("heavy-start-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let python = host_python_venv(&dir.join("venv"));
    let ballast = dir.join("venv/lib/python3.11/site-packages/zz-start-ballast.pth");
    std::fs::write(&ballast, format!("{}\n", "x".repeat(16 << 20))).unwrap();
    let server = Server::start_with(&[
        ("SANDBOX_PYTHON", python.to_str().unwrap()),
        ("SANDBOX_CGROUP", "none"),
        ("POOL_SIZE", "0"),
    ]);
    let health = server.get("/health").json();
    assert_eq!(health["isolation"]["cgroup"], json!(null), "{health}");
    let post = |memory_mb: Option<u64>| {
        server.post_json(
            "/execute",
            &json!({"script": "def main():\n    return 7\n", "memory_mb": memory_mb}),
        )
    };
    // The same answer every time: it is the limit, not a passing fault.
    for _ in 0..2 {
        let r = post(Some(32));
        assert_eq!((r.status, r.kind()), (400, "memory_limit".to_string()), "{}", r.text());
        let body = r.json();
        assert_eq!(body["limit_mb"], 32, "{body}");
        assert!(
            body["error"].as_str().is_some_and(|m| m.contains("memory_mb")),
            "{body}"
        );
    }
    // Where Python fits, the same script runs: under a lowered limit and under the service's.
    assert_eq!(post(Some(128)).result(), json!(7));
    assert_eq!(post(None).result(), json!(7));
    drop(server);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A service limit too small for a flavour's imports (numpy and pandas ahead of the script
/// need more than 32 MiB) must not turn its scripts away as "retry later" forever: they run in
/// plain jails, importing what they need themselves, and meet the limit themselves if they must.
#[test]
fn a_flavour_that_cannot_start_under_the_memory_limit_leaves_its_scripts_to_plain_jails() {
    let server = Server::start_with(&[("MEMORY_LIMIT_MB", "32")]);
    for _ in 0..2 {
        let r = server.execute("import numpy\ndef main():\n    return int(numpy.int64(7))\n");
        assert_eq!(r.json(), json!({"result": 7, "stdout": ""}), "{}", r.text());
        let r = server.execute("import pandas\ndef main():\n    return 1\n");
        assert_eq!((r.status, r.kind()), (400, "memory_limit".to_string()), "{}", r.text());
    }
}
