//! The jail as ordinary programs expect it: /dev/stdout and friends write to the captured
//! output, and the service gives full isolation wherever its checkout lives.

mod common;

use common::Server;
use serde_json::json;

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
