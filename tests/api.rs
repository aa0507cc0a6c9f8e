//! The API as openapi.yaml describes it, against the real service: the description is current
//! and served, every documented example answers as documented, schemathesis finds nothing the
//! description does not allow, and the cross-cutting parts of the contract (bearer auth,
//! Server-Timing, X-Request-Id, trace ids in the logs, per-request limits) hold.
//!
//! Responses are checked against the description by scripts/check_response.py (jsonschema) and
//! fuzzed by schemathesis, both from the test tools venv: `./scripts/prepare-tools.sh` (which
//! `make test` runs) installs them into .sandbox/tools.

use crate::common;
use common::{repo, Response, Server};
use serde_json::{json, Map, Value};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn tools_python() -> PathBuf {
    let python = repo().join(".sandbox/tools/bin/python3");
    assert!(
        python.exists(),
        "the test tools are not installed: run `make test` (or ./scripts/prepare-tools.sh) first"
    );
    python
}

/// The committed openapi.json, the document the binary embeds.
fn spec() -> Value {
    let text = std::fs::read_to_string(repo().join("openapi.json")).expect("read openapi.json");
    serde_json::from_str(&text).expect("openapi.json is JSON")
}

/// Follows a local `$ref` (`#/components/...`).
fn resolve<'a>(spec: &'a Value, node: &'a Value) -> &'a Value {
    match node.get("$ref").and_then(Value::as_str) {
        Some(pointer) => {
            let target = spec
                .pointer(pointer.trim_start_matches('#'))
                .unwrap_or_else(|| panic!("dangling $ref {pointer}"));
            resolve(spec, target)
        }
        None => node,
    }
}

/// One request and the answer it got, for check_response.py.
struct Exchange {
    method: String,
    path: String,
    response: Response,
}

fn exchange(method: &str, path: &str, response: &Response) -> Exchange {
    Exchange {
        method: method.into(),
        path: path.into(),
        response: response.clone(),
    }
}

/// Asserts every exchange is what openapi.json says it must be: a documented status, the
/// required headers, and a body valid against the response's schema.
fn assert_as_described(exchanges: &[Exchange]) {
    let records: Vec<Value> = exchanges
        .iter()
        .map(|e| {
            let headers: Map<String, Value> = e
                .response
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            json!({
                "method": e.method,
                "path": e.path,
                "status": e.response.status,
                "headers": headers,
                "body": e.response.text(),
            })
        })
        .collect();
    let mut child = Command::new(tools_python())
        .arg(repo().join("scripts/check_response.py"))
        .arg(repo().join("openapi.json"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run scripts/check_response.py");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(Value::Array(records).to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "responses not as openapi.json describes them:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Equal as JSON values, with 1 and 1.0 the same number.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fn post(server: &Server, body: &Value) -> Response {
    server.post_json("/execute", body)
}

fn post_with(server: &Server, headers: &[(&str, &str)], body: &Value) -> Response {
    let mut all = vec![("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    server.request("POST", "/execute", &all, body.to_string().as_bytes())
}

/// The service's log line for one request, waiting briefly for the reader thread.
fn request_log_line(server: &Server, request_id: &str) -> Value {
    server
        .wait_for_log(|l| l["message"] == "request" && l["request_id"] == request_id)
        .unwrap_or_else(|| panic!("no request log line for {request_id}:\n{}", server.raw_logs()))
}

#[test]
fn openapi_json_is_generated_from_openapi_yaml() {
    let output = Command::new(tools_python())
        .arg(repo().join("scripts/openapi-json.py"))
        .arg("--stdout")
        .output()
        .expect("run scripts/openapi-json.py");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let committed = std::fs::read_to_string(repo().join("openapi.json")).unwrap();
    assert!(
        String::from_utf8_lossy(&output.stdout) == committed,
        "openapi.json is not the conversion of openapi.yaml: run \
         `.sandbox/tools/bin/python3 scripts/openapi-json.py` and commit both"
    );
    // A valid OpenAPI 3.1 document, $refs and all.
    let output = Command::new(tools_python())
        .args([
            "-c",
            "import sys, json\nfrom openapi_spec_validator import validate\nvalidate(json.load(open(sys.argv[1])))",
        ])
        .arg(repo().join("openapi.json"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "openapi.json is not valid OpenAPI: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let spec = spec();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3.1."));
    // Every error kind of the contract is documented.
    let kinds = spec["components"]["schemas"]["ErrorKind"]["enum"].as_array().unwrap();
    for kind in [
        "invalid_json",
        "invalid_request",
        "unsupported_media_type",
        "payload_too_large",
        "unauthorized",
        "syntax_error",
        "missing_main",
        "runtime_error",
        "result_not_json",
        "result_too_large",
        "exited",
        "timeout",
        "memory_limit",
        "overloaded",
        "not_found",
        "method_not_allowed",
        "unavailable",
        "internal",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "{kind} is not in ErrorKind");
    }
}

#[test]
fn the_service_serves_its_description() {
    let server = Server::shared();
    let committed = std::fs::read_to_string(repo().join("openapi.json")).unwrap();
    let r = server.get("/openapi.json");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(
        r.text() == committed,
        "GET /openapi.json is not the committed openapi.json"
    );
    let head = server.request("HEAD", "/openapi.json", &[], b"");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    let post = server.request("POST", "/openapi.json", &[], b"");
    assert_eq!((post.status, post.kind().as_str()), (405, "method_not_allowed"));
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    assert_as_described(&[
        exchange("GET", "/openapi.json", &r),
        exchange("HEAD", "/openapi.json", &head),
        exchange("POST", "/openapi.json", &post),
    ]);
}

/// Each request example of POST /execute, sent as it is. Where a response example has the same
/// name, the answer has that example's status and fields (`error` only has to be a message).
#[test]
fn every_documented_example_answers_as_documented() {
    let spec = spec();
    let operation = &spec["paths"]["/execute"]["post"];
    let examples = operation["requestBody"]["content"]["application/json"]["examples"]
        .as_object()
        .unwrap();
    assert!(examples.len() >= 5, "{examples:?}");
    let mut expected = std::collections::HashMap::new();
    for (status, response) in operation["responses"].as_object().unwrap() {
        let response = resolve(&spec, response);
        if let Some(documented) = response["content"]["application/json"]["examples"].as_object() {
            for (name, example) in documented {
                expected.insert(
                    name.clone(),
                    (status.parse::<u16>().unwrap(), resolve(&spec, example)["value"].clone()),
                );
            }
        }
    }
    let server = Server::shared();
    let mut exchanges = Vec::new();
    let mut compared = 0;
    for (name, example) in examples {
        let request = &resolve(&spec, example)["value"];
        let r = post(&server, request);
        if let Some((status, body)) = expected.get(name) {
            compared += 1;
            assert_eq!(r.status, *status, "example {name}: {}", r.text());
            let actual = r.json();
            let (documented, actual) = (body.as_object().unwrap(), actual.as_object().unwrap());
            let keys = |m: &Map<String, Value>| m.keys().cloned().collect::<std::collections::BTreeSet<_>>();
            assert_eq!(keys(documented), keys(actual), "example {name}: {}", r.text());
            for (key, value) in documented {
                if key == "error" {
                    assert!(actual[key].as_str().is_some_and(|e| !e.is_empty()), "example {name}");
                } else if key == "usage" {
                    // Measured, so only its shape can match the example's.
                    for field in ["wall_ms", "cpu_ms", "peak_memory_bytes"] {
                        assert!(actual[key][field].as_f64().is_some(), "example {name}: {}", actual[key]);
                    }
                } else {
                    assert!(
                        same(value, &actual[key]),
                        "example {name}, {key}: documented {value}, got {}",
                        actual[key]
                    );
                }
            }
        }
        exchanges.push(exchange("POST", "/execute", &r));
    }
    assert!(
        compared >= 5,
        "only {compared} request examples have a response example of the same name"
    );
    assert_as_described(&exchanges);
}

/// schemathesis generates requests from the description (its examples, boundary cases, and
/// random valid and invalid bodies) and checks every answer: no 5xx; status, content type,
/// headers and body as described; data the description forbids refused; undocumented methods
/// answered 405 with `Allow`. About 700 requests, some 15 s here.
#[test]
fn schemathesis_finds_nothing_the_description_does_not_allow() {
    let st = repo().join(".sandbox/tools/bin/st");
    tools_python();
    // The production default (zygotes where proven): most of its requests run a script.
    let server = Server::shared();
    let workdir = tempfile::tempdir().unwrap();
    let output = Command::new(st)
        .current_dir(workdir.path())
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .args(["run", &format!("http://127.0.0.1:{}/openapi.json", server.port)])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_headers_conformance,response_schema_conformance,negative_data_rejection,\
             unsupported_method,allow_header_conformance",
        ])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", "300", "--workers", "2", "--request-timeout", "30"])
        .args(["--generation-database", "none", "--no-color"])
        .stdin(Stdio::null())
        .output()
        .expect("run schemathesis");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "schemathesis found problems (exit {}):\n{report}",
        output.status
    );
    assert!(report.contains("Test cases:"), "{report}");
    common::assert_serving(&server);
}

#[test]
fn bearer_token_when_api_token_is_set() {
    let token = "s3cret-T0ken.with~chars";
    let server = Server::start_cold_with(&[("API_TOKEN", token)]);
    let body = json!({"script": "def main():\n    return 42\n"});
    let mut exchanges = Vec::new();
    let right = format!("Bearer {token}");
    let wrong = format!("Bearer {token}x");
    let basic = format!("Basic {token}");
    // The scheme is case-insensitive (RFC 9110, 11.1); the token is not.
    let shouted = format!("BEARER {token}");
    let token_shouted = format!("Bearer {}", token.to_uppercase());
    for (authorization, status) in [
        (None, 401),
        (Some(wrong.as_str()), 401),
        (Some("Bearer "), 401),
        (Some(basic.as_str()), 401),
        (Some(token), 401),
        (Some(token_shouted.as_str()), 401),
        (Some(shouted.as_str()), 200),
        (Some(right.as_str()), 200),
    ] {
        let headers: Vec<(&str, &str)> = authorization.map(|a| vec![("Authorization", a)]).unwrap_or_default();
        let r = post_with(&server, &headers, &body);
        assert_eq!(r.status, status, "Authorization: {authorization:?}: {}", r.text());
        if status == 401 {
            assert_eq!(r.kind(), "unauthorized");
            assert_eq!(r.header("www-authenticate"), Some("Bearer"));
            assert!(!r.text().contains(token), "the token leaked: {}", r.text());
        } else {
            assert_eq!(r.result(), json!(42));
        }
        exchanges.push(exchange("POST", "/execute", &r));
    }
    // Authentication comes before anything else is looked at.
    let r = server.request("POST", "/execute", &[("Content-Type", "text/plain")], b"nonsense");
    assert_eq!((r.status, r.kind().as_str()), (401, "unauthorized"));
    exchanges.push(exchange("POST", "/execute", &r));
    // Health and the description stay open.
    for path in ["/health", "/openapi.json"] {
        let r = server.get(path);
        assert_eq!(r.status, 200, "{path} needs no token: {}", r.text());
        exchanges.push(exchange("GET", path, &r));
    }
    assert_as_described(&exchanges);
    assert!(!server.raw_logs().contains(token), "the token is in the logs");

    // Without API_TOKEN no token is needed, and one sent is ignored.
    let open = Server::start_cold();
    assert_eq!(post(&open, &body).status, 200);
    assert_eq!(
        post_with(&open, &[("Authorization", "Bearer anything")], &body).status,
        200
    );
}

/// `validate;dur=…, queue;dur=…, sandbox;dur=…, total;dur=…` as (name, milliseconds).
fn server_timing(r: &Response) -> Vec<(String, f64)> {
    let header = r
        .header("server-timing")
        .unwrap_or_else(|| panic!("no Server-Timing on {}: {}", r.status, r.text()));
    header
        .split(',')
        .map(|metric| {
            let (name, dur) = metric
                .trim()
                .split_once(";dur=")
                .unwrap_or_else(|| panic!("bad metric in {header}"));
            (
                name.to_string(),
                dur.parse::<f64>()
                    .unwrap_or_else(|_| panic!("bad duration in {header}")),
            )
        })
        .collect()
}

#[test]
fn server_timing_on_every_execute_answer() {
    let server = Server::shared();
    let cases = [
        (
            json!({"script": "def main():\n    print('hi')\n    return 1\n"}),
            200,
            None,
        ),
        (
            json!({"script": "def main():\n    raise ValueError('x')\n"}),
            400,
            Some("runtime_error"),
        ),
        (
            json!({"script": "import sys\ndef main():\n    sys.exit(3)\n"}),
            400,
            Some("exited"),
        ),
        (
            json!({"script": "def main():\n    return {1, 2}\n"}),
            400,
            Some("result_not_json"),
        ),
        (
            json!({"script": "import time\ndef main():\n    time.sleep(60)\n", "timeout_seconds": 0.5}),
            400,
            Some("timeout"),
        ),
        // Refused before anything ran: the header is there too, with the steps not reached at 0.
        (json!({"script": "def main(:\n"}), 400, Some("syntax_error")),
        (json!({"script": "x = 1\n"}), 400, Some("missing_main")),
        (json!({"script": ""}), 400, Some("invalid_request")),
    ];
    let mut exchanges = Vec::new();
    for (body, status, kind) in cases {
        let r = post(&server, &body);
        assert_eq!(r.status, status, "{body}: {}", r.text());
        if let Some(kind) = kind {
            assert_eq!(r.kind(), kind);
        }
        let metrics = server_timing(&r);
        let names: Vec<&str> = metrics.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["validate", "queue", "sandbox", "total"], "{body}");
        let get = |name: &str| metrics.iter().find(|(n, _)| n == name).unwrap().1;
        assert!(metrics.iter().all(|(_, d)| d.is_finite() && *d >= 0.0), "{metrics:?}");
        assert!(
            get("total") >= get("sandbox") && get("total") >= get("validate"),
            "{metrics:?}"
        );
        if kind == Some("timeout") {
            assert!(get("sandbox") >= 450.0, "a 0.5 s timeout's sandbox time: {metrics:?}");
        }
        if matches!(kind, Some("syntax_error" | "missing_main" | "invalid_request")) {
            assert_eq!((get("queue"), get("sandbox")), (0.0, 0.0), "{metrics:?}");
        }
        exchanges.push(exchange("POST", "/execute", &r));
    }
    // A wrong method is an /execute answer too.
    let r = server.request("GET", "/execute", &[], b"");
    assert_eq!((r.status, r.kind().as_str()), (405, "method_not_allowed"));
    let names: Vec<String> = server_timing(&r).into_iter().map(|(name, _)| name).collect();
    assert_eq!(names, ["validate", "queue", "sandbox", "total"]);
    assert_as_described(&exchanges);
}

#[test]
fn every_response_has_a_request_id() {
    let server = Server::start_cold_with(&[("MAX_BODY_BYTES", "4096")]);
    let script = json!({"script": "def main():\n    return 1\n"}).to_string();
    let big = json!({"script": format!("def main():\n    return 1\n#{}\n", "x".repeat(10_000))}).to_string();
    let json_type = [("Content-Type", "application/json")];
    let cases: Vec<(&str, &str, Vec<(&str, &str)>, Vec<u8>, u16)> = vec![
        ("GET", "/health", vec![], vec![], 200),
        ("HEAD", "/health", vec![], vec![], 200),
        ("GET", "/openapi.json", vec![], vec![], 200),
        ("POST", "/execute", json_type.to_vec(), script.clone().into_bytes(), 200),
        ("POST", "/execute", json_type.to_vec(), b"{not json".to_vec(), 400),
        (
            "POST",
            "/execute",
            json_type.to_vec(),
            b"{\"script\": \"def f(:\"}".to_vec(),
            400,
        ),
        ("GET", "/nope", vec![], vec![], 404),
        ("GET", "/", vec![], vec![], 404),
        ("GET", "/execute", vec![], vec![], 405),
        ("PUT", "/health", vec![], vec![], 405),
        ("DELETE", "/openapi.json", vec![], vec![], 405),
        ("POST", "/execute", json_type.to_vec(), big.into_bytes(), 413),
        (
            "POST",
            "/execute",
            vec![("Content-Type", "text/plain")],
            script.clone().into_bytes(),
            415,
        ),
    ];
    let mut ids = std::collections::HashSet::new();
    let mut exchanges = Vec::new();
    for (method, path, headers, body, status) in cases {
        let r = server.request(method, path, &headers, &body);
        assert_eq!(r.status, status, "{method} {path}: {}", r.text());
        let id = r
            .header("x-request-id")
            .unwrap_or_else(|| panic!("no X-Request-Id on {method} {path}"))
            .to_string();
        assert!(
            !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)),
            "{id:?}"
        );
        assert!(ids.insert(id.clone()), "X-Request-Id {id} used twice");
        // The id names the request's log line.
        let line = request_log_line(&server, &id);
        assert_eq!(line["status"], status);
        assert_eq!(line["path"], path);
        exchanges.push(exchange(method, path, &r));
    }
    // A declared body over the cap is refused before it is read, with an id too.
    let raw = server.send_raw(
        b"POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n{",
        Duration::from_secs(10),
    );
    let r = Response::parse(&raw);
    assert_eq!(r.status, 413);
    assert!(r
        .header("x-request-id")
        .is_some_and(|id| !id.is_empty() && !ids.contains(id)));
    exchanges.push(exchange("POST", "/execute", &r));

    // A caller's own id is kept when it is plain, replaced otherwise.
    let mine = "caller-1.2:3_x";
    let r = server.request("POST", "/execute", &[("X-Request-Id", mine)], script.as_bytes());
    assert_eq!(r.header("x-request-id"), Some(mine));
    assert_eq!(request_log_line(&server, mine)["status"], 200);
    exchanges.push(exchange("POST", "/execute", &r));
    let long = "a".repeat(129);
    for bad in ["has space", "semi;colon", long.as_str()] {
        let r = server.request("GET", "/health", &[("X-Request-Id", bad)], b"");
        let id = r.header("x-request-id").unwrap();
        assert!(id != bad && !id.is_empty(), "{bad:?} kept");
        exchanges.push(exchange("GET", "/health", &r));
    }
    assert_as_described(&exchanges);
}

#[test]
fn trace_headers_reach_the_log_lines_when_a_project_is_set() {
    const CLOUD: &str = "105445aa7843bc8bf206b12000100000";
    const W3C: &str = "0af7651916cd43dd8448eb211c80319c";
    let cloud_header = format!("{CLOUD}/1;o=1");
    let w3c_header = format!("00-{W3C}-b7ad6b7169203331-01");
    let script = json!({"script": "def main():\n    return 1\n"});
    let sends = |server: &Server| -> Vec<(Option<&'static str>, String)> {
        let requests: [(&[(&str, &str)], Option<&'static str>); 4] = [
            (&[("X-Cloud-Trace-Context", cloud_header.as_str())], Some(CLOUD)),
            (&[("traceparent", w3c_header.as_str())], Some(W3C)),
            (
                &[
                    ("X-Cloud-Trace-Context", cloud_header.as_str()),
                    ("traceparent", w3c_header.as_str()),
                ],
                Some(CLOUD),
            ),
            (&[], None),
        ];
        requests
            .iter()
            .map(|(headers, trace)| {
                let r = post_with(server, headers, &script);
                assert_eq!(r.status, 200, "{}", r.text());
                (*trace, r.header("x-request-id").unwrap().to_string())
            })
            .collect()
    };
    let traced = Server::start_cold_with(&[("GOOGLE_CLOUD_PROJECT", "my-project-123")]);
    for (trace, id) in sends(&traced) {
        let line = request_log_line(&traced, &id);
        match trace {
            Some(trace) => assert_eq!(
                line["logging.googleapis.com/trace"],
                format!("projects/my-project-123/traces/{trace}"),
                "{line}"
            ),
            None => assert!(line.get("logging.googleapis.com/trace").is_none(), "{line}"),
        }
    }
    // A trace header on a request that fails early is logged with its trace too.
    let r = server_get_with(&traced, "/nope", &[("traceparent", w3c_header.as_str())]);
    let line = request_log_line(&traced, r.header("x-request-id").unwrap());
    assert_eq!(
        line["logging.googleapis.com/trace"],
        format!("projects/my-project-123/traces/{W3C}")
    );

    let untraced = Server::start_cold();
    for (_, id) in sends(&untraced) {
        let line = request_log_line(&untraced, &id);
        assert!(
            line.get("logging.googleapis.com/trace").is_none(),
            "no project, yet: {line}"
        );
    }
    assert!(!untraced.raw_logs().contains("logging.googleapis.com/trace"));
}

fn server_get_with(server: &Server, path: &str, headers: &[(&str, &str)]) -> Response {
    server.request("GET", path, headers, b"")
}

#[test]
fn per_request_limits_only_lower_the_service_limits() {
    let server = Server::shared();
    let health = server.get("/health").json();
    assert_eq!(health["limits"]["timeout_seconds"], 10.0);
    assert_eq!(health["limits"]["memory_mb"], 512);
    let mut exchanges = Vec::new();
    let mut run = |body: Value| {
        let r = post(&server, &body);
        exchanges.push(exchange("POST", "/execute", &r));
        r
    };

    // Time: a script that never ends, stopped at the lower limit, well before the service's.
    let forever =
        "import time\ndef main():\n    print('started', flush=True)\n    while True:\n        time.sleep(0.1)\n";
    let started = Instant::now();
    let r = run(json!({"script": forever, "timeout_seconds": 1}));
    let took = started.elapsed();
    assert_eq!((r.status, r.kind().as_str()), (400, "timeout"), "{}", r.text());
    assert_eq!(r.json()["limit_seconds"], 1.0);
    assert_eq!(r.json()["stdout"], "started\n");
    assert!(
        took < Duration::from_secs(5),
        "a 1 s limit under a 10 s one answered after {took:?}"
    );
    let quick = "def main():\n    return 'ok'\n";
    assert_eq!(
        run(json!({"script": quick, "timeout_seconds": 10})).result(),
        json!("ok")
    );
    // Fractions are fine; long enough that a loaded machine cannot starve a quick script past it.
    assert_eq!(
        run(json!({"script": quick, "timeout_seconds": 2.5})).result(),
        json!("ok")
    );
    let nulls = json!({"script": quick, "timeout_seconds": null, "memory_mb": null});
    assert_eq!(run(nulls).result(), json!("ok"));
    for timeout in [json!(10.5), json!(3600), json!(0), json!(-1), json!("5"), json!(true)] {
        let r = run(json!({"script": quick, "timeout_seconds": timeout}));
        assert_eq!(
            (r.status, r.kind().as_str()),
            (400, "invalid_request"),
            "timeout_seconds {timeout}"
        );
        assert!(r.json()["error"].as_str().unwrap().contains("timeout_seconds"));
    }

    // Memory: 200 MiB is over a lowered 100 MiB and fine under the service's 512 MiB.
    let allocate = "def main():\n    data = bytearray(200 * 1024 * 1024)\n    return len(data)\n";
    let r = run(json!({"script": allocate, "memory_mb": 100}));
    assert_eq!((r.status, r.kind().as_str()), (400, "memory_limit"), "{}", r.text());
    assert_eq!(r.json()["limit_mb"], 100);
    assert_eq!(run(json!({"script": allocate})).result(), json!(200 * 1024 * 1024));
    assert_eq!(
        run(json!({"script": allocate, "memory_mb": 512})).result(),
        json!(200 * 1024 * 1024)
    );
    assert_eq!(run(json!({"script": quick, "memory_mb": 64})).result(), json!("ok"));
    // Any limit under the service's may be asked for: one too small for Python to start is
    // answered as the memory limit it is.
    let r = run(json!({"script": quick, "memory_mb": 1}));
    assert_eq!((r.status, r.kind().as_str()), (400, "memory_limit"), "{}", r.text());
    assert_eq!(r.json()["limit_mb"], 1);
    for memory in [json!(513), json!(4096), json!(0), json!(-5), json!(100.5), json!("100")] {
        let r = run(json!({"script": quick, "memory_mb": memory}));
        assert_eq!(
            (r.status, r.kind().as_str()),
            (400, "invalid_request"),
            "memory_mb {memory}"
        );
        assert!(r.json()["error"].as_str().unwrap().contains("memory_mb"));
    }

    // The lowered limits are for that one request: the next gets the service's again.
    let r = run(json!({"script": "import time\ndef main():\n    time.sleep(1.5)\n    return 'slept'\n"}));
    assert_eq!(r.result(), json!("slept"));
    assert_as_described(&exchanges);
}
