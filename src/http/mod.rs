//! HTTP: the server loop (`serve`), routing (`POST /execute`, `GET /health`,
//! `GET /openapi.json`; JSON errors for everything else). Every request gets an
//! `X-Request-Id` and one log line.

mod body;
mod data;
mod delivery;
mod hangup;
mod health;
mod job;
mod unparsed;

use crate::config::Settings;
use crate::error::{ApiError, ErrorKind};
use crate::exec::{Executor, Include, Success, Timings};
use crate::fields;
use crate::jail::probe::SandboxPython;
use crate::jail::Launcher;
use crate::logging;
use crate::validation::ParserThreads;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::Value;
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// What the handlers share: the settings in force, the executor, and the service's state.
pub struct App<L: Launcher> {
    pub settings: Settings,
    pub executor: Executor<L>,
    /// The sandbox's Python (version, importable packages), found by the start-up probe.
    pub python: SandboxPython,
    /// Where scripts are validated (big ones on bounded threads of their own).
    pub parser_threads: ParserThreads,
    body_budget: body::BodyBudget,
    /// Answers their clients have not taken yet.
    waiting: delivery::Waiting,
    pub draining: AtomicBool,
    request_counter: AtomicU64,
    request_id_salt: u64,
}

impl<L: Launcher> App<L> {
    pub fn new(settings: Settings, executor: Executor<L>, python: SandboxPython) -> App<L> {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        );
        let parser_threads = ParserThreads::per_cpu(settings.queue_limit, settings.queue_timeout);
        let body_budget = body::BodyBudget::new(&settings, executor.admission.capacity());
        App {
            body_budget,
            waiting: delivery::Waiting::default(),
            settings,
            executor,
            python,
            parser_threads,
            draining: AtomicBool::new(false),
            request_counter: AtomicU64::new(0),
            request_id_salt: hasher.finish(),
        }
    }

    fn request_id(&self, headers: &HeaderMap) -> String {
        // A caller's own id is kept when it is short and plain, so logs line up across services.
        if let Some(id) = headers.get("x-request-id").and_then(|v| v.to_str().ok()) {
            if !id.is_empty()
                && id.len() <= 128
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
            {
                return id.to_string();
            }
        }
        let n = self.request_counter.fetch_add(1, Ordering::Relaxed);
        format!("{:016x}{:08x}", self.request_id_salt, n)
    }
}

type Body = delivery::AnswerBody;

/// The API description, generated from openapi.yaml by scripts/openapi-json.py (tests/api.rs
/// checks the two agree), served at `GET /openapi.json`.
const OPENAPI_JSON: &str = include_str!("../../openapi.json");

/// Serves connections until `shutdown` resolves, then stops accepting, lets the requests in
/// flight finish within the grace period, and returns.
pub async fn serve<L: Launcher>(listener: TcpListener, app: Arc<App<L>>, shutdown: impl Future<Output = &'static str>) {
    let header_read_timeout = app.settings.header_read_timeout;
    let grace = app.settings.shutdown_grace;
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of fds or similar: back off instead of spinning.
                        logging::warning("accept failed", fields! {"error" => e.to_string()});
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                delivery::limit_unsent(&stream);
                let hangup = hangup::Hangup::watch(&stream);
                let app = app.clone();
                let ids = app.clone();
                let write_timeout = app.settings.answer_write_timeout;
                let stream = delivery::WriteDeadline::new(stream, write_timeout);
                let stream = unparsed::JsonForUnparsed::new(stream, move || ids.request_id(&HeaderMap::new()));
                let service = service_fn(move |request| handle(app.clone(), request));
                let connection = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(header_read_timeout)
                    .max_buf_size(64 * 1024)
                    .serve_connection(TokioIo::new(stream), service);
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    let ended = match hangup {
                        // The peer gone, the connection is dropped, and with it its request
                        // (a running execution's jail is killed).
                        Ok(hangup) => tokio::select! {
                            ended = connection => ended,
                            _ = hangup.closed() => Ok(()),
                        },
                        Err(_) => connection.await,
                    };
                    // Its request was logged with the answer's status when the answer began.
                    if ended.as_ref().is_err_and(|e| delivery::stalled(e)) {
                        logging::warning(
                            "an answer was dropped: its client took no byte of it in time",
                            fields! {"answer_write_timeout_seconds" => write_timeout.as_secs_f64()},
                        );
                    }
                });
            }
            signal = &mut shutdown => {
                logging::info("shutting down: draining in-flight requests", fields! {"signal" => signal, "grace_seconds" => grace.as_secs_f64()});
                break;
            }
        }
    }
    drop(listener);
    app.draining.store(true, Ordering::Release);
    app.executor.close();
    let drained = graceful.shutdown();
    let mut drained = std::pin::pin!(drained);
    tokio::select! {
        _ = &mut drained => logging::info("drained", fields! {}),
        _ = tokio::time::sleep(grace) => {
            logging::warning("grace period over with requests still running: stopping them", fields! {});
            app.executor.stop_running();
            // Their answers (`unavailable`) are written before the process ends.
            if tokio::time::timeout(STOPPED_ANSWERS_TIME, &mut drained).await.is_err() {
                logging::warning("connections still open after the grace period", fields! {});
            }
        }
    }
}

/// How long the answers of executions stopped at the end of the shutdown grace may take.
const STOPPED_ANSWERS_TIME: Duration = Duration::from_millis(500);

async fn handle<L: Launcher>(app: Arc<App<L>>, request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let request_id = app.request_id(request.headers());
    let trace = trace_field(&app.settings, request.headers());
    let mut timings = None;

    let unanswered = Unanswered(Some(fields! {
        "request_id" => request_id.clone(),
        "method" => method.as_str(),
        "path" => path.clone(),
    }));
    let outcome = route(&app, request, &mut timings).await;
    unanswered.answered();
    let (mut response, kind) = match outcome {
        Ok(response) => (response, None),
        Err(error) => {
            if error.kind == ErrorKind::Internal {
                logging::error(
                    "internal error",
                    fields! {"request_id" => request_id, "detail" => error.message},
                );
            }
            let kind = error.kind;
            (error_response(public(error)), Some(kind))
        }
    };
    let total = started.elapsed();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    if let Some(t) = timings {
        let (validate, execution): (Duration, Timings) = t;
        let value = format!(
            "validate;dur={:.3}, queue;dur={:.3}, sandbox;dur={:.3}, total;dur={:.3}",
            ms(validate),
            ms(execution.queue),
            ms(execution.sandbox),
            ms(total)
        );
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert("server-timing", value);
        }
    }
    let status = response.status().as_u16();
    let mut line = fields! {
        "request_id" => request_id,
        "method" => method.as_str(),
        "path" => path,
        "status" => status,
        "latency_ms" => (ms(total) * 1000.0).round() / 1000.0,
    };
    if let Some(kind) = kind {
        line.insert("kind".into(), kind.as_str().into());
    }
    if let Some((key, value)) = trace {
        line.insert(key.into(), value.into());
    }
    // A 503 is a refusal the service meant (shutting down, no sandbox for now: logged on its
    // own where it happens), not a fault of its own: every rollout's drain would page.
    let severity = match status {
        503 => logging::Severity::Warning,
        500.. => logging::Severity::Error,
        _ => logging::Severity::Info,
    };
    logging::log(severity, "request", line);
    Ok(response)
}

/// Logs a request whose client went away before its answer: hyper drops the handler then,
/// and with it whatever the request was doing (a running execution's jail is killed).
struct Unanswered(Option<serde_json::Map<String, Value>>);

impl Unanswered {
    fn answered(mut self) {
        self.0 = None;
    }
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        if let Some(fields) = self.0.take() {
            logging::info(
                "the client went away before its answer; what it asked for was stopped",
                fields,
            );
        }
    }
}

/// What a client may see of an error: an internal one says nothing of its cause (that is
/// logged instead).
fn public(error: ApiError) -> ApiError {
    if error.kind == ErrorKind::Internal {
        ApiError::internal()
    } else {
        error
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `logging.googleapis.com/trace` from X-Cloud-Trace-Context or traceparent.
fn trace_field(settings: &Settings, headers: &HeaderMap) -> Option<(&'static str, String)> {
    let project = settings.google_cloud_project.as_ref()?;
    let trace_id = headers
        .get("x-cloud-trace-context")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split('/').next())
        .or_else(|| {
            headers
                .get("traceparent")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split('-').nth(1))
        })
        .filter(|id| !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit()))?;
    Some((
        "logging.googleapis.com/trace",
        format!("projects/{project}/traces/{trace_id}"),
    ))
}

async fn route<L: Launcher>(
    app: &App<L>,
    request: Request<Incoming>,
    timings: &mut Option<(Duration, Timings)>,
) -> Result<Response<Body>, ApiError> {
    match request.uri().path() {
        "/execute" => {
            // Every /execute answer gets Server-Timing, refusals included (with zero durations).
            *timings = Some((Duration::ZERO, Timings::default()));
            match *request.method() {
                Method::POST => run_script(app, request, timings).await,
                _ => Err(body::refuse_unread(request, ApiError::method_not_allowed("POST"))),
            }
        }
        "/health" => match *request.method() {
            Method::GET | Method::HEAD => {
                let draining = app.draining.load(Ordering::Acquire);
                let body = health::health(&app.settings, &app.executor, &app.python, &app.parser_threads, draining)?;
                Ok(json_response(StatusCode::OK, body.to_string()))
            }
            _ => Err(body::refuse_unread(request, ApiError::method_not_allowed("GET, HEAD"))),
        },
        "/openapi.json" => match *request.method() {
            Method::GET | Method::HEAD => Ok(json_response(StatusCode::OK, OPENAPI_JSON.to_string())),
            _ => Err(body::refuse_unread(request, ApiError::method_not_allowed("GET, HEAD"))),
        },
        _ => Err(body::refuse_unread(
            request,
            ApiError::new(ErrorKind::NotFound, "no such endpoint; try POST /execute"),
        )),
    }
}

/// `POST /execute`: runs one script.
async fn run_script<L: Launcher>(
    app: &App<L>,
    request: Request<Incoming>,
    timings: &mut Option<(Duration, Timings)>,
) -> Result<Response<Body>, ApiError> {
    let settings = &app.settings;
    let before_the_body = || {
        if app.draining.load(Ordering::Acquire) {
            return Err(ApiError::new(ErrorKind::Unavailable, "shutting down"));
        }
        body::authorize(settings, request.headers())?;
        body::check_content_type(request.headers())?;
        if app.waiting.is_full() {
            let mut refused = ApiError::overloaded(Duration::from_secs(1));
            refused.message = "too many answers are waiting for their clients to read them; retry later".into();
            return Err(refused);
        }
        Ok(())
    };
    if let Err(refused) = before_the_body() {
        return Err(body::refuse_unread(request, refused));
    }
    let body::ReadBody {
        bytes: body,
        room: _room,
    } = body::read_body(settings, &app.body_budget, request).await?;

    let validate_started = Instant::now();
    let job = job::job_from_body(settings, &app.parser_threads, &body).await;
    drop(body);
    let validate_took = validate_started.elapsed();
    *timings = Some((validate_took, Timings::default()));
    let job = job?;

    let include = job.data.include;
    let mut execution_timings = Timings::default();
    let outcome = app.executor.run(job, &mut execution_timings).await;
    *timings = Some((validate_took, execution_timings));
    let answer = app.waiting.body(Bytes::from(success_body(outcome?, include)));
    Ok(with_json_headers(StatusCode::OK, answer))
}

/// The success body, built by hand so the result's JSON text passes through byte for byte:
/// `result` and `stdout`, then only what the request asked for.
fn success_body(success: Success, include: Include) -> String {
    let Success {
        result,
        stdout,
        stderr,
        files,
        usage,
    } = success;
    let stdout_text = stdout.text();
    let mut body = String::with_capacity(result.get().len() + stdout_text.len() + 64);
    body.push_str("{\"result\":");
    body.push_str(result.get());
    body.push_str(",\"stdout\":");
    body.push_str(&Value::String(stdout_text).to_string());
    if stdout.truncated {
        body.push_str(",\"stdout_truncated\":true");
    }
    let mut member = |name: &str, value: Value| {
        body.push_str(",\"");
        body.push_str(name);
        body.push_str("\":");
        body.push_str(&value.to_string());
    };
    if let Some(files) = files {
        member("files", serde_json::to_value(files).unwrap_or_default());
    }
    // API.md lists a success body's keys: no `stderr_truncated` among them (an error has it).
    if include.stderr {
        member("stderr", Value::String(stderr.text()));
    }
    if include.usage {
        member("usage", serde_json::to_value(usage).unwrap_or_default());
    }
    body.push('}');
    body
}

fn json_response(status: StatusCode, body: String) -> Response<Body> {
    with_json_headers(status, delivery::AnswerBody::uncounted(Bytes::from(body)))
}

fn with_json_headers(status: StatusCode, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub fn error_response(error: ApiError) -> Response<Body> {
    let mut response = json_response(error.kind.status(), error.body().to_string());
    if let Some(after) = error.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(after.as_secs().max(1)));
    }
    if let Some(allow) = error.allow {
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
    }
    if error.kind == ErrorKind::Unauthorized {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_are_answered_500_without_their_detail() {
        let error =
            ApiError::new(ErrorKind::Internal, "index out of bounds at /work/main/src/x.rs:3").with("detail", "secret");
        let response = error_response(public(error));
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = public(ApiError::new(ErrorKind::Internal, "boom at /root")).body();
        assert_eq!(body, serde_json::json!({"error": "internal error", "kind": "internal"}));
    }

    #[test]
    fn trace_ids_come_from_either_header() {
        let mut s = Settings::defaults();
        s.google_cloud_project = Some("proj".into());
        for (name, value, trace) in [
            (
                "x-cloud-trace-context",
                "105445aa7843bc8bf206b12000100000/1;o=1",
                "105445aa7843bc8bf206b12000100000",
            ),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                "0af7651916cd43dd8448eb211c80319c",
            ),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(name, HeaderValue::from_static(value));
            assert_eq!(
                trace_field(&s, &headers).unwrap().1,
                format!("projects/proj/traces/{trace}")
            );
        }
    }
}
