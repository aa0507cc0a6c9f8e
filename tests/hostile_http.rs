//! Hostile clients, family 6: bad HTTP. Malformed, nested, oversized and mistyped bodies get
//! clear JSON errors; slow and idle connections are cut off without holding anyone else up;
//! scripts built to choke the validator get a clear answer. Other clients are served
//! meanwhile, and the host is left as it was.

use crate::common;
use crate::hostile;

use common::{assert_serving, Response, Server};
use hostile::{assert_error, assert_error_of, contained, during, HostSnapshot};
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn post(server: &Server, content_type: Option<&str>, body: &[u8]) -> Response {
    let headers: Vec<(&str, &str)> = content_type.map(|ct| ("Content-Type", ct)).into_iter().collect();
    server.request("POST", "/execute", &headers, body)
}

/// Waits until the server closes `stream` (EOF or reset), for at most `limit`. Returns how
/// long that took and what the server said before closing.
fn until_closed(mut stream: TcpStream, limit: Duration) -> (Option<Duration>, Vec<u8>) {
    let started = Instant::now();
    stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut said = Vec::new();
    let mut buffer = [0u8; 4096];
    while started.elapsed() < limit {
        match stream.read(&mut buffer) {
            Ok(0) => return (Some(started.elapsed()), said),
            Ok(n) => said.extend_from_slice(&buffer[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return (Some(started.elapsed()), said),
        }
    }
    (None, said)
}

#[test]
fn malformed_and_oversized_bodies_get_clear_json_errors() {
    let server = hostile::shared_server();
    contained(&server, || {
        let deep_arrays = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let deep_objects = format!("{}1{}", "{\"a\":".repeat(100_000), "}".repeat(100_000));
        let deep_extra = format!(
            "{{\"script\": \"def main():\\n    return 1\\n\", \"extra\": {}1{}}}",
            "[".repeat(50_000),
            "]".repeat(50_000)
        );
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            (
                "truncated",
                br#"{"script": "def main():\n    ret"#.to_vec(),
                "invalid_json",
            ),
            ("cut after a key", br#"{"script""#.to_vec(), "invalid_json"),
            (
                "invalid UTF-8",
                b"{\"script\": \"def main():\\n    return '\xc3\x28'\\n\"}".to_vec(),
                "invalid_json",
            ),
            ("overlong UTF-8", b"{\"script\": \"\xc0\xaf\"}".to_vec(), "invalid_json"),
            (
                "a byte order mark",
                b"\xef\xbb\xbf{\"script\": \"def main():\\n    return 1\\n\"}".to_vec(),
                "invalid_json",
            ),
            (
                "a lone surrogate",
                br#"{"script": "def main():\n    return '\ud800'\n"}"#.to_vec(),
                "invalid_json",
            ),
            ("100k nested arrays", deep_arrays.into_bytes(), "invalid_json"),
            ("100k nested objects", deep_objects.into_bytes(), "invalid_json"),
            (
                "deep nesting in an ignored field",
                deep_extra.into_bytes(),
                "invalid_json",
            ),
            (
                // JSON, but no limit: out of range as any other (what the field may be is said).
                "a limit beyond f64",
                br#"{"script": "def main():\n    return 1\n", "timeout_seconds": 1e999}"#.to_vec(),
                "invalid_request",
            ),
            (
                "NUL bytes in the script",
                b"{\"script\": \"def main():\\n    return 1\\u0000\\n\"}".to_vec(),
                "syntax_error",
            ),
            (
                "script is an object",
                br#"{"script": {"def main": 1}}"#.to_vec(),
                "invalid_request",
            ),
            (
                "top level is a string",
                br#""def main():\n    return 1\n""#.to_vec(),
                "invalid_request",
            ),
            (
                "negative timeout",
                br#"{"script": "def main():\n    return 1\n", "timeout_seconds": -1}"#.to_vec(),
                "invalid_request",
            ),
            (
                "absurd memory",
                br#"{"script": "def main():\n    return 1\n", "memory_mb": 18446744073709551615}"#.to_vec(),
                "invalid_request",
            ),
        ];
        for (what, body, kind) in cases {
            let r = post(&server, Some("application/json"), &body);
            let body = assert_error_of(&r, &[kind]);
            assert_eq!(r.status, 400, "{what}: {body}");
        }
        // Wrong content types.
        let good = br#"{"script": "def main():\n    return 1\n"}"#;
        for ct in [
            "text/plain",
            "application/xml",
            "application/json-seq",
            "multipart/form-data; boundary=x",
            "application/x-www-form-urlencoded",
            "json",
        ] {
            let r = post(&server, Some(ct), good);
            assert_error(&r, 415, "unsupported_media_type");
        }
        // Sizes: declared too big (refused unread), actually too big, and too big in chunks.
        let r = Response::parse(&server.send_raw(
            b"POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 99999999999\r\nConnection: close\r\n\r\n{",
            Duration::from_secs(10),
        ));
        assert_error(&r, 413, "payload_too_large");
        let huge = format!(
            "{{\"script\": \"def main():\\n    return 1\\n#{}\"}}",
            "x".repeat(3 << 20)
        );
        let r = post(&server, Some("application/json"), huge.as_bytes());
        assert_error(&r, 413, "payload_too_large");
        let mut chunked = b"POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
        for _ in 0..48 {
            chunked.extend_from_slice(format!("{:x}\r\n{}\r\n", 65536, "y".repeat(65536)).as_bytes());
        }
        chunked.extend_from_slice(b"0\r\n\r\n");
        let r = Response::parse(&server.send_raw(&chunked, Duration::from_secs(10)));
        assert_error(&r, 413, "payload_too_large");
        // A client that declares too big a body and stalls after part of it gets the 413 at
        // once, not after the service gave up draining the rest (5 s).
        let mut stalled = server.connect();
        stalled
            .write_all(b"POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 3145728\r\n\r\n")
            .unwrap();
        stalled.write_all(&[b'x'; 100_000]).unwrap();
        stalled.set_read_timeout(Some(Duration::from_secs(4))).unwrap();
        let mut head = [0u8; 32];
        let n = stalled.read(&mut head).expect("no answer while the client stalls");
        assert!(
            head[..n].starts_with(b"HTTP/1.1 413 "),
            "{}",
            String::from_utf8_lossy(&head[..n])
        );
        // Broken HTTP framing, which hyper answers itself before any handler: a JSON error with
        // a kind and a request id all the same, invalid_request's 400, and the service goes on.
        let many_headers: Vec<u8> = (0..5000).flat_map(|i| format!("X-{i}: a\r\n").into_bytes()).collect();
        let chunked_head =
            b"POST /execute HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
        for (what, raw, status) in [
            ("a garbage request line", b"GARBAGE\r\n\r\n".to_vec(), 400),
            ("an HTTP/0.9 request", b"GET /health\r\n\r\n".to_vec(), 400),
            (
                "an unknown version",
                b"GET /health HTTP/3.7\r\nHost: x\r\n\r\n".to_vec(),
                400,
            ),
            (
                "a control byte in a header",
                b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: \x01\r\n\r\n".to_vec(),
                400,
            ),
            (
                "a Content-Length that is not a number",
                b"POST /execute HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n".to_vec(),
                400,
            ),
            (
                "two Content-Lengths",
                b"POST /execute HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n{}".to_vec(),
                400,
            ),
            (
                "5000 headers",
                [&b"POST /execute HTTP/1.1\r\nHost: x\r\n"[..], &many_headers, b"\r\n"].concat(),
                400,
            ),
            ("a bad chunk size", [&chunked_head[..], b"zz\r\n"].concat(), 400),
        ] {
            let answer = server.send_raw(&raw, Duration::from_secs(10));
            let r = Response::parse(&answer);
            let body = assert_error_of(&r, &["invalid_request"]);
            assert_eq!(r.status, status, "{what}: {body}");
            assert_eq!(r.header("content-type"), Some("application/json"), "{what}");
            assert!(r.header("x-request-id").is_some_and(|id| !id.is_empty()), "{what}");
        }
        // An HTTP/2 client (prior knowledge) could not read an HTTP/1.1 answer: its connection
        // is closed at once, with nothing written.
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
        let mut stream = server.connect();
        stream.write_all(preface).unwrap();
        let (closed, answer) = until_closed(stream, Duration::from_secs(10));
        assert!(
            closed.is_some() && answer.is_empty(),
            "HTTP/2 preface: {closed:?} {answer:?}"
        );
        // Garbage after a good request on the same connection: the good one is answered, then
        // the garbage gets its JSON error too.
        let answer = server.send_raw(
            b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE\r\n\r\n",
            Duration::from_secs(10),
        );
        let second = answer
            .windows(9)
            .rposition(|w| w == b"HTTP/1.1 ")
            .filter(|&at| at > 0)
            .unwrap_or_else(|| panic!("one answer only: {}", String::from_utf8_lossy(&answer)));
        assert_eq!(Response::parse(&answer[..second]).status, 200);
        assert_error(&Response::parse(&answer[second..]), 400, "invalid_request");
        // Both Content-Length and chunked: no second request smuggled behind the first.
        let smuggle = b"POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n";
        let answer = String::from_utf8_lossy(&server.send_raw(smuggle, Duration::from_secs(5))).to_string();
        assert!(!answer.contains("not_found"), "a smuggled request was served: {answer}");
    });
}

#[test]
fn slow_clients_are_cut_off_without_blocking_others() {
    let server = Server::start_with(&[("HEADER_READ_TIMEOUT_SECONDS", "2"), ("BODY_READ_TIMEOUT_SECONDS", "2")]);
    let snapshot = HostSnapshot::take(&server);
    let header = b"POST /execute HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    during(&server, || {
        std::thread::scope(|scope| {
            // Slowloris: twenty connections sending their headers one byte a second.
            let slow: Vec<_> = (0..20)
                .map(|_| {
                    scope.spawn(|| {
                        let mut stream = server.connect();
                        stream.set_read_timeout(Some(Duration::from_millis(1000))).unwrap();
                        let started = Instant::now();
                        let mut buffer = [0u8; 1024];
                        for byte in header.iter() {
                            if stream.write_all(&[*byte]).is_err() {
                                return started.elapsed();
                            }
                            match stream.read(&mut buffer) {
                                Ok(_) => return started.elapsed(), // EOF or an answer: cut off
                                Err(e)
                                    if e.kind() == std::io::ErrorKind::WouldBlock
                                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                                Err(_) => return started.elapsed(),
                            }
                            if started.elapsed() > Duration::from_secs(20) {
                                break;
                            }
                        }
                        panic!("a slowloris connection was never cut off");
                    })
                })
                .collect();
            // A slow body: complete headers, then a byte a second.
            let slow_body = scope.spawn(|| {
                let body = br#"{"script": "def main():\n    return 1\n"}"#;
                let mut stream = server.connect();
                stream
                    .write_all(format!("POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes())
                    .unwrap();
                stream.set_read_timeout(Some(Duration::from_millis(1000))).unwrap();
                let mut answer = Vec::new();
                let mut buffer = [0u8; 4096];
                for byte in body.iter() {
                    let _ = stream.write_all(&[*byte]);
                    match stream.read(&mut buffer) {
                        Ok(0) => break,
                        Ok(n) => {
                            answer.extend_from_slice(&buffer[..n]);
                            break;
                        }
                        Err(_) => {}
                    }
                }
                answer
            });
            // Meanwhile, others are answered promptly.
            std::thread::sleep(Duration::from_millis(500));
            for _ in 0..3 {
                let started = Instant::now();
                assert_serving(&server);
                assert!(
                    started.elapsed() < Duration::from_secs(5),
                    "a request waited behind slow clients"
                );
            }
            for handle in slow {
                let took = handle.join().unwrap();
                assert!(took < Duration::from_secs(2 + 5), "cut off only after {took:?}");
            }
            let answer = slow_body.join().unwrap();
            let r = Response::parse(&answer);
            let body = assert_error(&r, 400, "invalid_request");
            assert!(body["error"].as_str().unwrap().contains("in time"), "{body}");
        });
    });
    assert_serving(&server);
    snapshot.assert_restored();
}

#[test]
fn hundreds_of_idle_connections_do_not_block_a_request() {
    let server = Server::start_with(&[("HEADER_READ_TIMEOUT_SECONDS", "2")]);
    contained(&server, || {
        let idle: Vec<TcpStream> = (0..300).map(|_| server.connect()).collect();
        // Half of them also start a request and stop.
        let mut partial: Vec<TcpStream> = (0..150).map(|_| server.connect()).collect();
        for s in &mut partial {
            s.write_all(b"POST /execute HTTP/1.1\r\nHost: x\r\nContent-Le").unwrap();
        }
        let started = Instant::now();
        assert_serving(&server);
        let health = server.get("/health");
        assert_eq!(health.status, 200);
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        // The server closes what sends no request within the header timeout.
        for stream in idle.into_iter().step_by(30).chain(partial.into_iter().step_by(30)) {
            let (closed, _) = until_closed(stream, Duration::from_secs(10));
            assert!(closed.is_some(), "an idle connection was kept open");
        }
    });
}

/// Every connection holds one of the service's descriptors, idle ones too. Started with a
/// soft limit of 256 (hard 4096), the service raises it: 400 idle connections leave its jails
/// the descriptors they need (at 256 the request below got 503, its jail's pipes refused).
#[test]
fn idle_connections_do_not_use_up_the_descriptors_jails_need() {
    let server = Server::start_with_open_files(256, 4096, &[]);
    let script = b"{\"script\": \"def main():\\n    return 1\\n\"}";
    // Accepted before the flood, sent after it.
    let mut waiting = server.connect();
    assert_serving(&server);
    let idle: Vec<TcpStream> = (0..400).map(|_| server.connect()).collect();
    // Time for the service to accept them (a connection only waits in the kernel before that).
    std::thread::sleep(Duration::from_millis(500));
    let head = format!(
        "POST /execute HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        script.len()
    );
    waiting.write_all(head.as_bytes()).unwrap();
    waiting.write_all(script).unwrap();
    waiting.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut answer = Vec::new();
    let _ = waiting.read_to_end(&mut answer);
    let r = Response::parse(&answer);
    assert_eq!(
        (r.status, r.json()),
        (200, json!({"result": 1, "stdout": ""})),
        "{}",
        r.text()
    );
    drop(idle);
    assert_serving(&server);
}

#[test]
fn scripts_built_to_choke_the_validator_get_clear_answers() {
    let server = hostile::shared_server();
    contained(&server, || {
        let budget = 1024 * 1024 - 64;
        let plus_terms = (budget - 40) / 2;
        let cases: Vec<(&str, String)> = vec![
            (
                "10k nested parentheses",
                format!(
                    "def main():\n    return {}1{}\n",
                    "(".repeat(10_000),
                    ")".repeat(10_000)
                ),
            ),
            (
                "1 MiB of 1+1+...",
                format!("def main():\n    return {}1\n", "1+".repeat(plus_terms)),
            ),
            (
                "100k nested list literal",
                format!(
                    "x = {}{}\ndef main():\n    return 1\n",
                    "[".repeat(100_000),
                    "]".repeat(100_000)
                ),
            ),
            (
                "500k unary minus",
                format!("def main():\n    return {}1\n", "-".repeat(500_000)),
            ),
            (
                "200 nested blocks",
                format!(
                    "def main():\n{}{}return 1\n",
                    (1..200)
                        .map(|i| format!("{}if 1:\n", " ".repeat(i)))
                        .collect::<String>(),
                    " ".repeat(200)
                ),
            ),
            (
                "10k nested lambdas",
                format!("def main():\n    return {}1\n", "lambda: ".repeat(10_000)),
            ),
            (
                "100k chained method calls",
                format!("def main():\n    return 'x'{}\n", ".strip()".repeat(100_000)),
            ),
            (
                "nested f-strings reusing their quotes",
                format!("def main():\n    return {}\n", "f'{".repeat(5) + "1" + &"}'".repeat(5)),
            ),
        ];
        for (what, script) in cases {
            assert!(script.len() <= 1024 * 1024, "{what}: {} bytes", script.len());
            let started = Instant::now();
            let r = server.execute(&script);
            if r.status == 200 {
                assert!(
                    r.json()["result"].is_number() || r.json()["result"].is_string(),
                    "{what}: {}",
                    r.text()
                );
            } else {
                let body = assert_error_of(&r, &["syntax_error", "runtime_error", "memory_limit"]);
                let message = body["error"].as_str().unwrap();
                assert!(
                    ["nested", "parenthes", "indentation", "invalid syntax", "too"]
                        .iter()
                        .any(|w| message.contains(w)),
                    "{what}: an error that says what is wrong: {body}"
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "{what} took {:?}",
                started.elapsed()
            );
        }
        // The right answer where Python can give one.
        let r = server.execute(&format!("def main():\n    return {}1\n", "1+".repeat(500)));
        assert_eq!(r.result(), json!(501));
        let r = server.execute(&format!(
            "x = '{}'\n{}def main():\n    return len(x)\n",
            "z".repeat(900_000),
            "y = 1\n".repeat(10_000)
        ));
        assert_eq!(r.result(), json!(900_000));
    });
}

/// The service's threads named `validate` (its parser threads), as /proc shows them.
fn parser_threads(server_pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{server_pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|task| std::fs::read_to_string(task.path().join("comm")).is_ok_and(|name| name.trim() == "validate"))
        .count()
}

#[test]
fn a_flood_of_big_scripts_gets_a_bounded_number_of_parser_threads() {
    // Every script over 16 KiB is parsed on a thread of its own (with a big stack): a flood of
    // them must not make a thread each. Seen from outside (the service's `validate` threads in
    // /proc) and in /health; every request of the flood is answered, none refused while the
    // queue has room.
    let server = Server::start_cold();
    let health = server.get("/health").json();
    let capacity = health["validation"]["capacity"]
        .as_u64()
        .unwrap_or_else(|| panic!("/health does not count the parser threads: {health}")) as usize;
    // Parsed whole before it is found to lack `main`: no jail, only parsing.
    let script = format!("x = {}1\n", "1+".repeat(400_000));
    // Six times as many as there are parser threads, at once.
    let flood = 6 * capacity;
    let most = contained(&server, || {
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            let watcher = scope.spawn(|| {
                let mut most = 0;
                while !done.load(std::sync::atomic::Ordering::Acquire) {
                    most = most.max(parser_threads(server.pid()));
                    std::thread::sleep(Duration::from_millis(2));
                }
                most
            });
            let requests: Vec<_> = (0..flood)
                .map(|_| common::post_in_background(server.port, json!({ "script": script })))
                .collect();
            // They wait for a parser thread as they would for a slot: none is refused while
            // the queue (64) has room.
            for request in requests {
                let r = request.join().expect("a flood request");
                assert_error(&r, 400, "missing_main");
            }
            // A burst of big scripts that run: each parsed on a thread, each answered.
            let padded = format!("def main():\n    return 7\n#{}\n", "x".repeat(20_000));
            let burst: Vec<_> = (0..40)
                .map(|_| common::post_in_background(server.port, json!({ "script": padded })))
                .collect();
            for request in burst {
                let r = request.join().expect("a burst request");
                assert_eq!(r.json(), json!({"result": 7, "stdout": ""}), "{}", r.text());
            }
            done.store(true, std::sync::atomic::Ordering::Release);
            watcher.join().unwrap()
        })
    });
    assert!(most >= 1, "the watcher never saw a parser thread");
    assert!(
        most <= capacity,
        "{most} parser threads at once, over the {capacity} /health states"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let health = server.get("/health").json();
        let alive = parser_threads(server.pid());
        if health["validation"]["in_use"] == 0 && health["validation"]["waiting"] == 0 && alive == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "parser threads still there ({alive} in /proc): {health}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// POSTs `body` to /execute and returns the connection unread: a client about to hang up.
fn send_without_reading(server: &Server, body: &str) -> TcpStream {
    let mut stream = server.connect();
    write!(
        stream,
        "POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    stream
}

#[test]
fn a_client_that_hangs_up_stops_its_execution_and_frees_its_slot() {
    let server = Server::start_with(&[("MAX_CONCURRENT", "1"), ("QUEUE_LIMIT", "0"), ("TIMEOUT_SECONDS", "30")]);
    // The script names its process, so that the host can tell it from zygotes and warm jails.
    let body = json!({"script": "import ctypes\ndef main():\n    ctypes.CDLL(None).prctl(15, b'hung-up-on', 0, 0, 0)\n    while True:\n        pass\n"}).to_string();
    let running = || {
        common::processes()
            .into_iter()
            .filter(|p| p.name == "hung-up-on" && p.state != 'Z')
            .map(|p| p.pid)
            .collect::<Vec<u32>>()
    };
    // Also when bytes follow the request, which the service has not read when the client
    // goes: a stray line break after the body (some clients send one), a pipelined request.
    for after in ["", "\r\n", "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"] {
        let mut stream = send_without_reading(&server, &body);
        stream.write_all(after.as_bytes()).expect("send");
        let deadline = Instant::now() + Duration::from_secs(10);
        while running().is_empty() {
            assert!(Instant::now() < deadline, "the execution never started");
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(stream);
        // Its jail is killed, not left to burn CPU until the time limit, and the one slot is
        // free.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = running();
            if left.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "still running after the client left ({after:?} after its request): {left:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let r = server.execute("def main():\n    return 'next'\n");
        assert_eq!(r.json(), json!({"result": "next", "stdout": ""}), "{}", r.text());
    }
    let line = server.wait_for_log(|l| l["message"].as_str().is_some_and(|m| m.contains("client went away")));
    let line = line.unwrap_or_else(|| panic!("not logged: {}", server.raw_logs()));
    assert_eq!(
        (line["path"].as_str(), line["method"].as_str()),
        (Some("/execute"), Some("POST")),
        "{line}"
    );
}

/// Clients that hang up while their jail is being made (forked, moved into its cgroup) leave
/// no cgroup behind: an unauthenticated client could otherwise grow the host's cgroups.
#[test]
fn clients_that_hang_up_while_their_jail_starts_leave_no_cgroup_behind() {
    let server = Server::start();
    let jail_cgroups = || {
        let mut names: Vec<String> = common::service_cgroups(server.pid())
            .iter()
            .flat_map(|parent| std::fs::read_dir(parent).into_iter().flatten().flatten())
            .filter(|entry| entry.path().is_dir())
            .map(|entry| entry.path().display().to_string())
            .collect();
        names.sort();
        names
    };
    // The zygotes' own (and the start-up checks', if not yet removed). A new one may stay
    // only while a jail lives in it (a warm jail the pool started meanwhile); an empty one is
    // left behind.
    let before = jail_cgroups();
    let left_behind = || -> Vec<String> {
        jail_cgroups()
            .into_iter()
            .filter(|dir| !before.contains(dir))
            .filter(|dir| {
                std::fs::read_to_string(std::path::Path::new(dir).join("cgroup.procs"))
                    .map_or(true, |procs| procs.trim().is_empty())
            })
            .collect()
    };
    let body = json!({"script": "import time\ndef main():\n    time.sleep(5)\n"}).to_string();
    for i in 0..40u64 {
        let stream = send_without_reading(&server, &body);
        std::thread::sleep(Duration::from_millis(i % 8 * 4));
        drop(stream);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !left_behind().is_empty() {
        assert!(
            Instant::now() < deadline,
            "left behind: {:?} (before: {before:?})",
            left_behind()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    common::assert_serving(&server);
}

#[test]
fn uploads_at_once_are_held_to_a_memory_budget() {
    // The budget: as many full bodies as can run or wait (1 + 1 here), 200 000 bytes, counted
    // as they arrive.
    let server = Server::start_with(&[
        ("MAX_BODY_BYTES", "100000"),
        ("MAX_CONCURRENT", "1"),
        ("QUEUE_LIMIT", "1"),
    ]);
    let upload = |declared: usize, sent: usize| {
        let mut stream = server.connect();
        write!(
            stream,
            "POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {declared}\r\n\r\n{{\"script\": \"{}",
            "x".repeat(sent - 12)
        )
        .expect("send");
        stream
    };
    let near_the_cap = format!("def main():\n    return 2\n# {}\n", "x".repeat(85_000));
    // Uploads that declared big bodies and stalled after a few bytes hold those bytes only:
    // forty of them (ten times the budget declared) shut nobody out.
    let stalled: Vec<_> = (0..40).map(|_| upload(90_000, 20)).collect();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(server.execute(&near_the_cap).result(), json!(2));
    drop(stalled);
    // Two that sent 90 000 bytes hold them; a third sending as much would take the service
    // past its budget: refused as it arrives.
    let first = upload(95_000, 90_000);
    let second = upload(95_000, 90_000);
    std::thread::sleep(Duration::from_millis(300));
    let mut third = upload(95_000, 30_000);
    third.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answer = Vec::new();
    let _ = third.read_to_end(&mut answer);
    let r = Response::parse(&answer);
    assert_error(&r, 429, "overloaded");
    assert!(r.header("retry-after").is_some(), "{}", r.text());
    // A small one still fits.
    assert_eq!(server.execute("def main():\n    return 1\n").result(), json!(1));
    // Once the stalled uploads are gone, their room is free again.
    drop((first, second));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = server.execute(&near_the_cap);
        if r.status == 200 {
            assert_eq!(r.result(), json!(2));
            break;
        }
        assert_error(&r, 429, "overloaded");
        assert!(Instant::now() < deadline, "the room was never freed");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_serving(&server);
}

#[test]
fn clients_that_never_read_their_answers_cannot_grow_the_service() {
    let server = Server::start_with(&[("ANSWER_WRITE_TIMEOUT_SECONDS", "5")]);
    // Each asks for an 8 MB answer and never reads it (with a 4 KiB receive buffer).
    let body = json!({"script": "def main():\n    return 'a' * 8_000_000\n"}).to_string();
    let never_reading = || {
        let stream = send_without_reading(&server, &body);
        let size: libc::c_int = 4096;
        // SAFETY: setsockopt on this test's own socket, with a c_int it reads.
        unsafe {
            use std::os::fd::AsRawFd;
            libc::setsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        stream
    };
    // Answers waiting for their clients are held to a budget (64 MiB): once they fill it,
    // requests are refused before anything runs, however many clients stall.
    let mut stalled = Vec::new();
    let refused = loop {
        stalled.push(never_reading());
        std::thread::sleep(Duration::from_millis(150));
        let r = server.execute("def main():\n    return 1\n");
        if r.status == 429 {
            break r;
        }
        assert_eq!(r.result(), json!(1));
        assert!(
            stalled.len() < 16,
            "{} answers of 8 MB waited and nothing was refused",
            stalled.len()
        );
    };
    assert_error(&refused, 429, "overloaded");
    assert!(refused.json()["error"]
        .as_str()
        .unwrap()
        .contains("waiting for their clients"));
    // A connection that takes no byte for ANSWER_WRITE_TIMEOUT_SECONDS is dropped with its
    // answer (their clients still read none of them): the room is free again.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = server.execute("def main():\n    return 2\n");
        if r.status == 200 {
            assert_eq!(r.result(), json!(2));
            break;
        }
        assert_error(&r, 429, "overloaded");
        assert!(Instant::now() < deadline, "the stalled answers were never dropped");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Each drop is logged: its request's line said 200 when the answer began.
    let dropped = server
        .log_lines()
        .iter()
        .filter(|l| {
            l["severity"] == "WARNING"
                && l["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("an answer was dropped"))
        })
        .count();
    assert!(dropped >= 1, "no drop logged");
    drop(stalled);
    assert_serving(&server);
}

#[test]
fn a_slow_reader_that_keeps_reading_gets_its_whole_answer() {
    // Far slower than the service can write (a 6 MB answer at ~1 MB/s), never pausing as long
    // as ANSWER_WRITE_TIMEOUT_SECONDS: it keeps making progress, so it is not cut off.
    let server = Server::start_with(&[("ANSWER_WRITE_TIMEOUT_SECONDS", "1")]);
    let body = json!({"script": "def main():\n    return 'a' * 6_000_000\n"}).to_string();
    let mut stream = send_without_reading(&server, &body);
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut answer = Vec::new();
    let mut piece = vec![0u8; 96 << 10];
    loop {
        std::thread::sleep(Duration::from_millis(100));
        match stream.read(&mut piece) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&piece[..n]),
            Err(e) => panic!("after {} bytes: {e}", answer.len()),
        }
        if !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            continue;
        }
        let r = Response::parse(&answer);
        if r.header("content-length").and_then(|n| n.parse::<usize>().ok()) == Some(r.body.len()) {
            break;
        }
    }
    let r = Response::parse(&answer);
    let declared = r.header("content-length").and_then(|n| n.parse::<usize>().ok());
    // A cut-off answer would be a 200 whose body stops short of its length.
    assert_eq!(
        (r.status, Some(r.body.len())),
        (200, declared),
        "the answer was cut off"
    );
    assert_eq!(r.result().as_str().map(str::len), Some(6_000_000));
    assert_serving(&server);
}
