//! HTTP routing: `POST /execute`, `GET /health`, `GET /openapi.json`; JSON errors for everything else.
//! Every request gets an `X-Request-Id` and one log line.

use crate::config::Settings;
use crate::error::{ApiError, ErrorKind};
use crate::executor::{Executor, Job, Success, Timings};
use crate::fields;
use crate::logging;
use crate::validation;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Map, Value};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub struct App {
    pub settings: Settings,
    pub executor: Executor,
    /// The static part of `/health`: the isolation in force, found by the probe.
    pub health: Map<String, Value>,
    pub draining: AtomicBool,
    request_counter: AtomicU64,
    request_id_salt: u64,
}

impl App {
    pub fn new(settings: Settings, executor: Executor, health: Map<String, Value>) -> App {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        );
        App {
            settings,
            executor,
            health,
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

type Body = Full<Bytes>;

/// The API description, generated from openapi.yaml by scripts/openapi-json.py (tests/api.rs
/// checks the two agree), served at `GET /openapi.json`.
const OPENAPI_JSON: &str = include_str!("../openapi.json");

pub async fn handle(app: std::sync::Arc<App>, request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let request_id = app.request_id(request.headers());
    let trace = trace_field(&app.settings, request.headers());
    let mut timings = None;

    let outcome = route(&app, request, &mut timings).await;
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
    let severity = if status >= 500 {
        logging::Severity::Error
    } else {
        logging::Severity::Info
    };
    logging::log(severity, "request", line);
    Ok(response)
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

async fn route(
    app: &App,
    request: Request<Incoming>,
    timings: &mut Option<(Duration, Timings)>,
) -> Result<Response<Body>, ApiError> {
    match request.uri().path() {
        "/execute" => match *request.method() {
            Method::POST => execute(app, request, timings).await,
            _ => Err(ApiError::method_not_allowed("POST")),
        },
        "/health" => match *request.method() {
            Method::GET | Method::HEAD => health(app),
            _ => Err(ApiError::method_not_allowed("GET, HEAD")),
        },
        "/openapi.json" => match *request.method() {
            Method::GET | Method::HEAD => Ok(json_response(StatusCode::OK, OPENAPI_JSON.to_string())),
            _ => Err(ApiError::method_not_allowed("GET, HEAD")),
        },
        _ => Err(ApiError::new(
            ErrorKind::NotFound,
            "no such endpoint; try POST /execute",
        )),
    }
}

fn health(app: &App) -> Result<Response<Body>, ApiError> {
    if app.draining.load(Ordering::Acquire) {
        return Err(ApiError::new(ErrorKind::Unavailable, "shutting down"));
    }
    let mut body = Map::new();
    body.insert("status".into(), "ok".into());
    body.extend(app.health.clone());
    let admission = &app.executor.admission;
    body.insert(
        "slots".into(),
        serde_json::json!({"capacity": admission.capacity(), "in_use": admission.in_use(), "waiting": admission.waiting()}),
    );
    if let Some(pool) = &app.executor.pool {
        use crate::sandbox::Flavour;
        let ready: Map<String, Value> = [Flavour::Plain, Flavour::Data]
            .iter()
            .map(|f| (f.as_str().to_string(), pool.ready(*f).into()))
            .collect();
        body.insert(
            "pool".into(),
            serde_json::json!({"size_per_flavour": pool.size(), "ready": ready}),
        );
    }
    Ok(json_response(StatusCode::OK, Value::Object(body).to_string()))
}

async fn execute(
    app: &App,
    request: Request<Incoming>,
    timings: &mut Option<(Duration, Timings)>,
) -> Result<Response<Body>, ApiError> {
    // Every /execute answer gets Server-Timing, refusals included (with zero durations).
    *timings = Some((Duration::ZERO, Timings::default()));
    if app.draining.load(Ordering::Acquire) {
        return Err(ApiError::new(ErrorKind::Unavailable, "shutting down"));
    }
    let settings = &app.settings;
    authorize(settings, request.headers())?;
    check_content_type(request.headers())?;
    let body = read_body(settings, request).await?;

    let validate_started = Instant::now();
    let validated = match parse_job(settings, &body) {
        Ok((script, timeout, memory_bytes)) => match validation::validate_off_thread(script.clone()).await {
            Ok(info) => Ok((script, timeout, memory_bytes, info)),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    drop(body);
    let validate_took = validate_started.elapsed();
    *timings = Some((validate_took, Timings::default()));
    let (script, timeout, memory_bytes, info) = validated?;

    let mut execution_timings = Timings::default();
    let job = Job {
        script,
        info,
        timeout,
        memory_bytes,
    };
    let outcome = app.executor.run(job, &mut execution_timings).await;
    *timings = Some((validate_took, execution_timings));
    let Success { result, stdout } = outcome?;

    // Built by hand so the result's JSON text passes through byte for byte.
    let stdout_text = stdout.text();
    let mut body = String::with_capacity(result.get().len() + stdout_text.len() + 64);
    body.push_str("{\"result\":");
    body.push_str(result.get());
    body.push_str(",\"stdout\":");
    body.push_str(&Value::String(stdout_text).to_string());
    if stdout.truncated {
        body.push_str(",\"stdout_truncated\":true");
    }
    body.push('}');
    Ok(json_response(StatusCode::OK, body))
}

fn authorize(settings: &Settings, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &settings.api_token else {
        return Ok(());
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .unwrap_or("");
    if constant_time_eq(presented.trim().as_bytes(), token.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::new(ErrorKind::Unauthorized, "missing or wrong bearer token"))
    }
}

/// Compares without an early exit, so timing does not reveal how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut difference = u8::from(a.len() != b.len());
    for i in 0..b.len() {
        let x = a.get(i).copied().unwrap_or(0);
        difference |= x ^ b[i];
    }
    std::hint::black_box(difference) == 0
}

fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let essence = value
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json" {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorKind::UnsupportedMediaType,
            "Content-Type must be application/json",
        ))
    }
}

async fn read_body(settings: &Settings, request: Request<Incoming>) -> Result<Bytes, ApiError> {
    let limit = settings.max_body_bytes;
    let too_large = || {
        ApiError::new(
            ErrorKind::PayloadTooLarge,
            format!("the request body is over the {limit}-byte limit"),
        )
        .with("limit_bytes", limit)
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let reading = Limited::new(request.into_body(), limit).collect();
    match tokio::time::timeout(settings.body_read_timeout, reading).await {
        Err(_) => Err(ApiError::new(
            ErrorKind::InvalidRequest,
            "the request body did not arrive in time",
        )),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(too_large()),
        Ok(Err(_)) => Err(ApiError::new(
            ErrorKind::InvalidRequest,
            "the request body could not be read",
        )),
    }
}

/// Checks the request's JSON: returns (script, timeout, memory limit in bytes).
fn parse_job(settings: &Settings, body: &[u8]) -> Result<(String, Duration, u64), ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::new(ErrorKind::InvalidJson, format!("the body is not valid JSON: {e}")))?;
    let Value::Object(mut object) = value else {
        return Err(ApiError::new(
            ErrorKind::InvalidRequest,
            "the body must be a JSON object",
        ));
    };
    let script = match object.remove("script") {
        Some(Value::String(s)) if s.is_empty() => {
            return Err(ApiError::new(ErrorKind::InvalidRequest, "\"script\" is empty"))
        }
        Some(Value::String(s)) => s,
        Some(_) => return Err(ApiError::new(ErrorKind::InvalidRequest, "\"script\" must be a string")),
        None => return Err(ApiError::new(ErrorKind::InvalidRequest, "\"script\" is missing")),
    };
    if script.len() > settings.max_script_bytes {
        return Err(ApiError::new(
            ErrorKind::InvalidRequest,
            format!(
                "\"script\" is {} bytes, over the {}-byte limit",
                script.len(),
                settings.max_script_bytes
            ),
        ));
    }
    let limits = &settings.limits;
    let timeout = match object.get("timeout_seconds") {
        None | Some(Value::Null) => limits.timeout,
        Some(value) => {
            let max = limits.timeout.as_secs_f64();
            match value.as_f64() {
                Some(s) if s > 0.0 && s <= max => Duration::from_secs_f64(s),
                _ => {
                    return Err(ApiError::new(
                        ErrorKind::InvalidRequest,
                        format!("\"timeout_seconds\" must be a number above 0 and at most {max}"),
                    ))
                }
            }
        }
    };
    let memory_bytes = match object.get("memory_mb") {
        None | Some(Value::Null) => limits.memory_bytes,
        Some(value) => {
            let max = limits.memory_bytes / (1024 * 1024);
            // A whole number, as JSON Schema's "integer" counts them (128.0 too).
            let whole = value.as_u64().or_else(|| {
                value
                    .as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                    .map(|f| f as u64)
            });
            match whole {
                Some(mb) if (32..=max).contains(&mb) => mb * 1024 * 1024,
                _ => {
                    return Err(ApiError::new(
                        ErrorKind::InvalidRequest,
                        format!("\"memory_mb\" must be a whole number from 32 to {max}"),
                    ))
                }
            }
        }
    };
    Ok((script, timeout, memory_bytes))
}

fn json_response(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
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

    fn settings() -> Settings {
        Settings::from_iter(Vec::<(String, String)>::new()).unwrap()
    }

    #[test]
    fn job_fields_are_checked() {
        let s = settings();
        let kind = |body: &str| parse_job(&s, body.as_bytes()).map(|_| ()).map_err(|e| e.kind.as_str());
        assert_eq!(kind("{\"script\": \"x\"}"), Ok(()));
        assert_eq!(kind("{\"script\": \"x\", \"extra\": 1}"), Ok(()));
        assert_eq!(kind("nope"), Err("invalid_json"));
        assert_eq!(kind("{\"script\": \"x\""), Err("invalid_json"));
        assert_eq!(kind("[1]"), Err("invalid_request"));
        assert_eq!(kind("\"def main(): pass\""), Err("invalid_request"));
        assert_eq!(kind("{}"), Err("invalid_request"));
        assert_eq!(kind("{\"script\": 3}"), Err("invalid_request"));
        assert_eq!(kind("{\"script\": \"\"}"), Err("invalid_request"));
        assert_eq!(kind("{\"script\": null}"), Err("invalid_request"));
        assert_eq!(
            kind("{\"script\": \"x\", \"timeout_seconds\": 11}"),
            Err("invalid_request")
        );
        assert_eq!(
            kind("{\"script\": \"x\", \"timeout_seconds\": 0}"),
            Err("invalid_request")
        );
        assert_eq!(
            kind("{\"script\": \"x\", \"timeout_seconds\": \"5\"}"),
            Err("invalid_request")
        );
        assert_eq!(kind("{\"script\": \"x\", \"timeout_seconds\": 2.5}"), Ok(()));
        assert_eq!(kind("{\"script\": \"x\", \"memory_mb\": 1024}"), Err("invalid_request"));
        assert_eq!(kind("{\"script\": \"x\", \"memory_mb\": 128}"), Ok(()));
        assert_eq!(kind("{\"script\": \"x\", \"memory_mb\": 1.5}"), Err("invalid_request"));
        assert_eq!(kind("{\"script\": \"x\", \"memory_mb\": 128.0}"), Ok(()));
    }

    #[test]
    fn invalid_utf8_is_invalid_json() {
        let s = settings();
        let err = parse_job(&s, b"{\"script\": \"\xff\"}").unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidJson);
    }

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
    fn tokens_compare_exactly() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secreT", b"secret"));
        assert!(!constant_time_eq(b"secret1", b"secret"));
        assert!(!constant_time_eq(b"", b"secret"));
        assert!(!constant_time_eq(b"secre", b"secret"));
    }

    #[test]
    fn trace_ids_come_from_either_header() {
        let mut s = settings();
        s.google_cloud_project = Some("proj".into());
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-cloud-trace-context",
            HeaderValue::from_static("105445aa7843bc8bf206b12000100000/1;o=1"),
        );
        assert_eq!(
            trace_field(&s, &headers).unwrap().1,
            "projects/proj/traces/105445aa7843bc8bf206b12000100000"
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            "traceparent",
            HeaderValue::from_static("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        );
        assert_eq!(
            trace_field(&s, &headers).unwrap().1,
            "projects/proj/traces/0af7651916cd43dd8448eb211c80319c"
        );
    }
}
