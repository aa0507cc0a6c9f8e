//! Runs the runner's own unit tests (tests/test_runner.py) with the sandbox's Python.

use crate::common;

#[test]
fn runner_unit_tests_pass() {
    let python = common::repo().join(".sandbox/venv/bin/python3");
    assert!(python.exists(), "the sandbox is not prepared: run `make test`");
    let output = std::process::Command::new(python)
        .args(["-m", "unittest", "-v", "tests/test_runner.py"])
        .current_dir(common::repo())
        .output()
        .expect("run python3");
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("OK"), "{text}");
}
