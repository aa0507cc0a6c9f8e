//! Hostile data in and out: planted links, special files, floods of files and names, growing
//! files and huge inputs. Every answer is the script's real outcome or a clear JSON error, the
//! host never reads a path the script could have written, and other clients are served.

use crate::common;
use crate::hostile;

use common::Server;
use hostile::{assert_error, assert_error_of, contained};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn post(server: &Server, body: Value) -> common::Response {
    server.post_json("/execute", &body)
}

#[test]
fn links_planted_for_collect_are_not_followed() {
    let server = hostile::shared_server_with(&[("TIMEOUT_SECONDS", "5")]);
    contained(&server, || {
        let script = r#"import os
def main():
    os.symlink('/etc/passwd', 'passwd.txt')
    os.symlink('/proc/self/environ', 'environ.txt')
    os.symlink('.', 'loop')
    os.makedirs('d')
    os.symlink('/usr', 'd/usr')
    open('real.txt', 'w').write('real')
    return 1
"#;
        let r = post(
            &server,
            json!({"script": script, "collect": ["*.txt", "**/*", "loop/**/*.txt", "d/usr/**/*"]}),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let files = r.json()["files"].clone();
        let names: Vec<&String> = files.as_object().unwrap().keys().collect();
        assert_eq!(names, ["real.txt"], "{files}");
    });
}

#[test]
fn special_files_matching_a_pattern_do_not_hang() {
    let server = hostile::shared_server_with(&[("TIMEOUT_SECONDS", "5")]);
    contained(&server, || {
        let script = r#"import os, socket
def main():
    os.mkfifo('fifo.dat')
    s = socket.socket(socket.AF_UNIX)
    s.bind('sock.dat')
    os.symlink('/dev/zero', 'zero.dat')
    open('ok.dat', 'w').write('ok')
    return 1
"#;
        let started = Instant::now();
        let r = post(&server, json!({"script": script, "collect": ["*.dat"]}));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "collect waited on a special file"
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let names: Vec<String> = r.json()["files"].as_object().unwrap().keys().cloned().collect();
        assert_eq!(names, ["ok.dat"]);
    });
}

#[test]
fn a_file_still_growing_is_collected_bounded() {
    let server = Server::start_with(&[("TIMEOUT_SECONDS", "5"), ("MAX_RESULT_BYTES", "1000000")]);
    contained(&server, || {
        // A child keeps appending after main returns: it is killed before collection, and
        // whatever size the file reached, the answer is a value or result_too_large.
        let script = r#"import subprocess, time
def main():
    subprocess.Popen(['sh', '-c', 'while :; do echo xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx >> grow.log; done'])
    time.sleep(0.5)
    return 'returned'
"#;
        let r = post(&server, json!({"script": script, "collect": ["*.log"]}));
        match r.status {
            200 => {
                let body = r.json();
                let file = &body["files"]["grow.log"];
                let size = file["size"].as_u64().unwrap();
                assert!(size > 0 && size <= 1_000_000, "{size}");
            }
            _ => {
                assert_error(&r, 400, "result_too_large");
            }
        }
    });
}

#[test]
fn a_flood_of_files_is_refused_quickly() {
    let server = hostile::shared_server_with(&[("TIMEOUT_SECONDS", "8")]);
    contained(&server, || {
        let script = r#"import os
def main():
    made = 0
    try:
        for i in range(40):
            os.mkdir(f'd{i}')
            for j in range(90):
                open(f'd{i}/f{j}', 'w').close()
                made += 1
    except OSError:
        pass
    return made
"#;
        let started = Instant::now();
        let r = post(&server, json!({"script": script, "collect": ["**/*", "**", "*/*"]}));
        assert!(started.elapsed() < Duration::from_secs(8));
        let body = assert_error(&r, 400, "result_too_large");
        assert!(body["error"].as_str().unwrap().contains("files"), "{body}");
    });
}

#[test]
fn deep_directories_and_odd_names_are_handled() {
    let server = hostile::shared_server_with(&[("TIMEOUT_SECONDS", "8")]);
    contained(&server, || {
        let script = r#"import os
def main():
    path = '.'
    for i in range(300):
        path += '/d'
        try:
            os.mkdir(path)
        except OSError:
            break
    open(path + '/deep.txt', 'w').write('deep')
    open(b'bad-\xff.txt', 'w').write('not utf-8')
    open('line\nbreak.txt', 'w').write('newline')
    return len(path)
"#;
        // Deeper than a search goes (32 levels): refused, not silently left out.
        let r = post(&server, json!({"script": script, "collect": ["**/*.txt"]}));
        let body = assert_error(&r, 400, "result_too_large");
        assert!(
            body["error"].as_str().unwrap().contains("deeper than 32 levels"),
            "{body}"
        );
        // Within it: every file that can be named comes back, a newline in a name included.
        let shallow = script.replace("range(300)", "range(20)");
        let r = post(&server, json!({"script": shallow, "collect": ["**/*.txt"]}));
        let files = r.json()["files"].clone();
        let names: Vec<&str> = files.as_object().unwrap().keys().map(String::as_str).collect();
        let deep = format!("{}deep.txt", "d/".repeat(20));
        assert_eq!(names, [deep.as_str(), "line\nbreak.txt"], "{}", r.text());
    });
}

#[test]
fn input_and_files_at_the_body_cap() {
    let server = Server::start_with(&[("MAX_BODY_BYTES", "300000"), ("POOL_SIZE", "0")]);
    contained(&server, || {
        let big = "x".repeat(200_000);
        let r = post(
            &server,
            json!({"script": "def main(d):\n    return len(d)\n", "input": big}),
        );
        assert_eq!(r.result(), json!(200_000));
        let r = post(
            &server,
            json!({"script": "import os\ndef main():\n    return os.path.getsize('a.txt')\n", "files": {"a.txt": big}}),
        );
        assert_eq!(r.result(), json!(200_000));
        let r = post(
            &server,
            json!({"script": "def main(d):\n    return 1\n", "input": "y".repeat(400_000)}),
        );
        assert_error(&r, 413, "payload_too_large");
        // Deeply nested input: a clear answer, never a crash.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let body = format!("{{\"script\": \"def main(d):\\n    return 1\\n\", \"input\": {deep}}}");
        let r = server.request(
            "POST",
            "/execute",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
        assert_error_of(
            &r,
            &["invalid_json", "invalid_request", "runtime_error", "memory_limit"],
        );
    });
}

#[test]
fn files_cannot_be_written_outside_the_working_directory() {
    let server = Server::start_with(&[("POOL_SIZE", "0")]);
    contained(&server, || {
        for name in ["../x", "../../etc/x", "/tmp/x", "a/../../x", "..", "a/./b"] {
            let r = post(
                &server,
                json!({"script": "def main():\n    return 1\n", "files": {name: "x"}}),
            );
            assert_error(&r, 400, "invalid_request");
        }
        // 100 files are fine, 101 are not.
        let files: serde_json::Map<String, Value> = (0..101).map(|i| (format!("f{i}"), json!(""))).collect();
        let r = post(
            &server,
            json!({"script": "def main():\n    return 1\n", "files": files}),
        );
        assert_error(&r, 400, "invalid_request");
        let files: serde_json::Map<String, Value> = (0..100).map(|i| (format!("f{i}"), json!(""))).collect();
        let r = post(
            &server,
            json!({"script": "import os\ndef main():\n    return len(os.listdir('.'))\n", "files": files}),
        );
        assert_eq!(r.result(), json!(100));
    });
}
