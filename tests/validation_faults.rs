//! A validator that panics (a parser bug) is answered with a JSON 500 `internal`, never with a
//! dropped connection, whether the script was validated inline (small) or on a parser thread
//! (big); the service keeps serving. In process: the real HTTP stack (`http::serve`) with a
//! parse function that panics put in the validator's place, and a launcher that starts no
//! jails (nothing gets that far).

use crate::common;

use common::Response;
use python_executor::config::Settings;
use python_executor::error::ApiError;
use python_executor::exec::admission::Admission;
use python_executor::exec::Executor;
use python_executor::http::{self, App};
use python_executor::jail::probe::SandboxPython;
use python_executor::jail::{Execution, IsolationFacts, Jail, JailError, JailSpec, Launcher, RunRequest};
use python_executor::validation::{ParserThreads, ScriptInfo};
use std::future::Future;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct NoJails;
struct NoJail;

impl Jail for NoJail {
    fn started(&self) -> Instant {
        Instant::now()
    }

    fn is_alive(&mut self) -> bool {
        false
    }

    fn to_foreground(&self) {}

    fn run<'a>(
        self,
        _: RunRequest<'a>,
        _: Duration,
        _: tokio::sync::watch::Receiver<bool>,
    ) -> impl Future<Output = Execution> + Send + 'a {
        async { unreachable!("no script gets past this test's validator") }
    }
}

impl Launcher for NoJails {
    type Jail = NoJail;

    async fn start(&self, _: JailSpec) -> Result<NoJail, JailError> {
        Err(JailError::new("this test starts no jails"))
    }

    fn facts(&self) -> IsolationFacts {
        IsolationFacts {
            summary: "none (in-process test)".into(),
            namespaces: Vec::new(),
            user_namespace: false,
            cgroup: None,
            resource_limits: "none",
            seccomp: false,
            uid: 0,
            network: "host",
        }
    }
}

fn panicking_parser(_: &str) -> Result<ScriptInfo, ApiError> {
    panic!("an injected parser fault")
}

/// One request over a connection of its own; everything the server said until it closed.
fn exchange(port: u16, method: &str, path: &str, body: &str) -> Response {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    Response::parse(&answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parser_panic_is_a_json_500_on_both_paths() {
    let settings = Settings::defaults();
    let executor = Executor::new(
        Arc::new(NoJails),
        Arc::new(Admission::new(1, 1, Duration::from_secs(1))),
        None,
        settings.limits,
    );
    let mut app = App::new(settings, executor, SandboxPython::default());
    app.parser_threads = ParserThreads::with_parser(1, 0, std::time::Duration::ZERO, panicking_parser);
    let app = Arc::new(app);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(http::serve(listener, app.clone(), async move {
        let _ = stopped.await;
        "test over"
    }));

    let small = "def main():\n    return 1\n".to_string();
    let big = format!("{small}{}", "# padding\n".repeat(4000));
    for (what, script) in [("inline", small), ("on a parser thread", big)] {
        let body = serde_json::json!({ "script": script }).to_string();
        let r = tokio::task::spawn_blocking(move || exchange(port, "POST", "/execute", &body))
            .await
            .unwrap();
        assert_eq!(r.status, 500, "{what}: {}", r.text());
        assert_eq!(
            r.json(),
            serde_json::json!({"error": "internal error", "kind": "internal"}),
            "{what}"
        );
        let health = tokio::task::spawn_blocking(move || exchange(port, "GET", "/health", ""))
            .await
            .unwrap();
        assert_eq!(
            health.status,
            200,
            "{what}: the service stopped serving: {}",
            health.text()
        );
        assert_eq!(health.json()["validation"]["in_use"], 0, "{what}: {}", health.text());
    }
    let _ = stop.send(());
    server.await.unwrap();
}
