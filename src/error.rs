//! Every answer that is not a success: a kind (mapped to its status and `kind` string), a
//! one-line message, and the kind's own fields.

use hyper::StatusCode;
use serde_json::{Map, Value};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidJson,
    InvalidRequest,
    UnsupportedMediaType,
    PayloadTooLarge,
    Unauthorized,
    SyntaxError,
    MissingMain,
    RuntimeError,
    ResultNotJson,
    ResultTooLarge,
    Exited,
    Timeout,
    MemoryLimit,
    Overloaded,
    NotFound,
    MethodNotAllowed,
    Unavailable,
    Internal,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidJson => "invalid_json",
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::UnsupportedMediaType => "unsupported_media_type",
            ErrorKind::PayloadTooLarge => "payload_too_large",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::SyntaxError => "syntax_error",
            ErrorKind::MissingMain => "missing_main",
            ErrorKind::RuntimeError => "runtime_error",
            ErrorKind::ResultNotJson => "result_not_json",
            ErrorKind::ResultTooLarge => "result_too_large",
            ErrorKind::Exited => "exited",
            ErrorKind::Timeout => "timeout",
            ErrorKind::MemoryLimit => "memory_limit",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::NotFound => "not_found",
            ErrorKind::MethodNotAllowed => "method_not_allowed",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::InvalidJson
            | ErrorKind::InvalidRequest
            | ErrorKind::SyntaxError
            | ErrorKind::MissingMain
            | ErrorKind::RuntimeError
            | ErrorKind::ResultNotJson
            | ErrorKind::ResultTooLarge
            | ErrorKind::Exited
            | ErrorKind::Timeout
            | ErrorKind::MemoryLimit => StatusCode::BAD_REQUEST,
            ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::Overloaded => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The kinds a runner may report about a script (anything else it says is not trusted).
    pub fn from_runner(kind: &str) -> Option<ErrorKind> {
        Some(match kind {
            "syntax_error" => ErrorKind::SyntaxError,
            "missing_main" => ErrorKind::MissingMain,
            "runtime_error" => ErrorKind::RuntimeError,
            "result_not_json" => ErrorKind::ResultNotJson,
            "result_too_large" => ErrorKind::ResultTooLarge,
            "memory_limit" => ErrorKind::MemoryLimit,
            // `input` for a main that takes no argument, found only at call time.
            "invalid_request" => ErrorKind::InvalidRequest,
            _ => return None,
        })
    }
}

/// An error answer: `{"error": message, "kind": ..., ...fields}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
    pub fields: Map<String, Value>,
    /// For 429: the `Retry-After` header.
    pub retry_after: Option<Duration>,
    /// For 405: the `Allow` header.
    pub allow: Option<&'static str>,
}

/// The message is one line whatever it was built from (an exception's message is the script's
/// text): every character that ends a line for Python's `str.splitlines` becomes a space.
const LINE_BREAKS: [char; 10] = [
    '\n', '\r', '\u{0b}', '\u{0c}', '\u{1c}', '\u{1d}', '\u{1e}', '\u{85}', '\u{2028}', '\u{2029}',
];

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ApiError {
        let message: String = message.into().replace(LINE_BREAKS, " ");
        ApiError {
            kind,
            message,
            fields: Map::new(),
            retry_after: None,
            allow: None,
        }
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> ApiError {
        self.fields.insert(key.to_string(), value.into());
        self
    }

    pub fn internal() -> ApiError {
        ApiError::new(ErrorKind::Internal, "internal error")
    }

    pub fn overloaded(retry_after: Duration) -> ApiError {
        let mut e = ApiError::new(ErrorKind::Overloaded, "every sandbox is busy; retry later");
        e.retry_after = Some(retry_after);
        e
    }

    /// A script that is not Python 3.11, at 1-based `line` and `column`: found by the
    /// validator, or by CPython's compiler in the sandbox for what only it checks. `class`:
    /// SyntaxError or one of its subclasses (IndentationError, TabError), as CPython says.
    pub fn syntax_error(class: &str, message: &str, line: u64, column: u64) -> ApiError {
        ApiError::new(
            ErrorKind::SyntaxError,
            format!("{class}: {message} (line {line}, column {column})"),
        )
        .with("line", line)
        .with("column", column)
    }

    pub fn method_not_allowed(allow: &'static str) -> ApiError {
        let mut e = ApiError::new(
            ErrorKind::MethodNotAllowed,
            format!("method not allowed; allowed: {allow}"),
        );
        e.allow = Some(allow);
        e
    }

    pub fn body(&self) -> Value {
        let mut body = Map::with_capacity(self.fields.len() + 2);
        body.insert("error".into(), self.message.clone().into());
        body.insert("kind".into(), self.kind.as_str().into());
        for (k, v) in &self.fields {
            body.insert(k.clone(), v.clone());
        }
        Value::Object(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_contract_status() {
        let table = [
            (ErrorKind::InvalidJson, 400),
            (ErrorKind::InvalidRequest, 400),
            (ErrorKind::UnsupportedMediaType, 415),
            (ErrorKind::PayloadTooLarge, 413),
            (ErrorKind::Unauthorized, 401),
            (ErrorKind::SyntaxError, 400),
            (ErrorKind::MissingMain, 400),
            (ErrorKind::RuntimeError, 400),
            (ErrorKind::ResultNotJson, 400),
            (ErrorKind::ResultTooLarge, 400),
            (ErrorKind::Exited, 400),
            (ErrorKind::Timeout, 400),
            (ErrorKind::MemoryLimit, 400),
            (ErrorKind::Overloaded, 429),
            (ErrorKind::NotFound, 404),
            (ErrorKind::MethodNotAllowed, 405),
            (ErrorKind::Unavailable, 503),
            (ErrorKind::Internal, 500),
        ];
        for (kind, status) in table {
            assert_eq!(kind.status().as_u16(), status, "{}", kind.as_str());
        }
    }

    #[test]
    fn body_has_error_kind_and_fields_on_one_line() {
        let e = ApiError::new(ErrorKind::SyntaxError, "bad\nthing")
            .with("line", 3)
            .with("column", 7);
        let body = e.body();
        assert_eq!(body["error"], "bad thing");
        let every_break = "a\r\nb\rc\u{0b}d\u{0c}e\u{1c}f\u{1d}g\u{1e}h\u{85}i\u{2028}j\u{2029}k";
        let message = ApiError::new(ErrorKind::RuntimeError, every_break).message;
        assert_eq!(message, "a  b c d e f g h i j k");
        assert_eq!(body["kind"], "syntax_error");
        assert_eq!(body["line"], 3);
        assert_eq!(body["column"], 7);
    }

    #[test]
    fn runner_cannot_claim_service_kinds() {
        assert_eq!(ErrorKind::from_runner("runtime_error"), Some(ErrorKind::RuntimeError));
        assert_eq!(ErrorKind::from_runner("timeout"), None);
        assert_eq!(ErrorKind::from_runner("internal"), None);
    }
}
