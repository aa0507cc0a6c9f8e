//! The body's JSON → an `exec::Job`: the script, checked by `validation`, with the limits the
//! request asked for (never above the service's).

use crate::config::Settings;
use crate::error::{ApiError, ErrorKind};
use crate::exec::{Job, JobData};
use crate::http::data;
use crate::jail::protocol::nesting;
use crate::validation::ParserThreads;
use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

/// How deeply the body's arrays and objects may nest (serde_json's own default limit).
const MAX_NESTING: usize = 128;

/// The job a request body describes, or why it describes none.
pub async fn job_from_body(settings: &Settings, parser: &ParserThreads, body: &[u8]) -> Result<Job, ApiError> {
    let (script, timeout, memory_bytes, data) = parse_job(settings, body)?;
    let info = parser.validate(script.clone()).await?;
    if data.input.is_some() && info.main_takes_input == Some(false) {
        return Err(ApiError::new(
            ErrorKind::InvalidRequest,
            "the request has \"input\" but main() takes no argument: declare one, as in def main(data)",
        ));
    }
    Ok(Job {
        script,
        info,
        timeout,
        memory_bytes,
        data,
    })
}

/// Checks the request's JSON: returns (script, timeout, memory limit in bytes, data fields).
fn parse_job(settings: &Settings, body: &[u8]) -> Result<(String, Duration, u64, JobData), ApiError> {
    let invalid_json =
        |e: serde_json::Error| ApiError::new(ErrorKind::InvalidJson, format!("the body is not valid JSON: {e}"));
    // Members are kept as raw JSON text: `input` passes to main as the client wrote it.
    let whole: &RawValue = serde_json::from_slice(body).map_err(invalid_json)?;
    // Raw members skip serde_json's own nesting limit: the same limit, here, before any
    // recursive parser (serde's, or Python's for `input`) meets the body.
    if nesting(whole.get()) > MAX_NESTING {
        return Err(ApiError::new(
            ErrorKind::InvalidJson,
            format!("the body is not valid JSON: nested deeper than {MAX_NESTING} levels"),
        ));
    }
    if !whole.get().trim_start().starts_with('{') {
        return Err(ApiError::new(
            ErrorKind::InvalidRequest,
            "the body must be a JSON object",
        ));
    }
    let members: HashMap<String, &RawValue> = serde_json::from_str(whole.get()).map_err(invalid_json)?;
    // The body is JSON, yet a member may hold what serde_json does not read as a value (a
    // number beyond f64, a lone surrogate escape): said at its place in the body.
    let member_or = |name: &str| -> Result<Option<Value>, serde_json::Error> {
        members
            .get(name)
            .map(|raw| serde_json::from_str::<Value>(raw.get()))
            .transpose()
    };
    let member = |name: &str| -> Result<Option<Value>, ApiError> {
        member_or(name).map_err(|e| {
            let at = members.get(name).map_or(0, |raw| offset_in(body, raw.get()));
            invalid_json_at(body, at, &e)
        })
    };
    let script = match member("script")? {
        Some(Value::String(s)) if s.is_empty() => {
            return Err(ApiError::new(ErrorKind::InvalidRequest, "\"script\" is empty"))
        }
        // A byte order mark, as an editor may save it: `python script.py` skips it.
        Some(Value::String(s)) => match s.strip_prefix('\u{feff}') {
            Some(rest) => rest.to_string(),
            None => s,
        },
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
    // A limit serde_json cannot read (1e400) is out of range like any other.
    let timeout = match member_or("timeout_seconds")
        .unwrap_or(Some(Value::Bool(false)))
        .as_ref()
    {
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
    let memory_bytes = match member_or("memory_mb").unwrap_or(Some(Value::Bool(false))).as_ref() {
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
                Some(mb) if (1..=max).contains(&mb) => mb * 1024 * 1024,
                _ => {
                    return Err(ApiError::new(
                        ErrorKind::InvalidRequest,
                        format!("\"memory_mb\" must be a whole number from 1 to {max}"),
                    ))
                }
            }
        }
    };
    let data = data::parse(
        members.get("input").copied(),
        member("files")?,
        member("collect")?,
        member("include")?,
    )?;
    Ok((script, timeout, memory_bytes, data))
}

/// Where `part` (a slice of `body`, as serde_json's raw values are) starts in `body`.
fn offset_in(body: &[u8], part: &str) -> usize {
    (part.as_ptr() as usize)
        .saturating_sub(body.as_ptr() as usize)
        .min(body.len())
}

/// serde_json's complaint about a member that starts `at` bytes into the body, placed in the
/// body (its own line and column count from the member's first byte).
fn invalid_json_at(body: &[u8], at: usize, error: &serde_json::Error) -> ApiError {
    let text = error.to_string();
    let what = text.rfind(" at line ").map_or(text.as_str(), |end| &text[..end]);
    let before = &body[..at];
    let line = before.iter().filter(|&&b| b == b'\n').count() + error.line();
    let column = if error.line() == 1 {
        before.iter().rev().take_while(|&&b| b != b'\n').count() + error.column()
    } else {
        error.column()
    };
    ApiError::new(
        ErrorKind::InvalidJson,
        format!("the body is not valid JSON: {what} at line {line} column {column}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_fields_are_checked() {
        let s = Settings::defaults();
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
        // JSON, but beyond what a limit can be: out of range like 11.
        assert_eq!(
            kind("{\"script\": \"x\", \"timeout_seconds\": 1e400}"),
            Err("invalid_request")
        );
        assert_eq!(
            kind("{\"script\": \"x\", \"memory_mb\": -1e400}"),
            Err("invalid_request")
        );
    }

    #[test]
    fn a_member_serde_json_cannot_read_is_placed_in_the_body() {
        let s = Settings::defaults();
        let message = |body: &str| {
            parse_job(&s, body.as_bytes())
                .err()
                .map(|e| (e.kind.as_str(), e.message))
        };
        let (kind, text) = message("{\"script\": \"x\",\n \"files\": {\"a\": \"\\ud800\"}}").unwrap();
        assert_eq!(kind, "invalid_json");
        assert!(
            text.ends_with("unexpected end of hex escape at line 2 column 24"),
            "{text}"
        );
        let (_, text) = message("{\"script\": \"\\udc00\"}").unwrap();
        assert!(text.ends_with("at line 1 column 18"), "{text}");
    }

    #[test]
    fn deep_nesting_is_invalid_json_wherever_it_is() {
        let s = Settings::defaults();
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        for body in [
            deep(200),
            format!("{{\"script\": \"x\", \"input\": {}}}", deep(200)),
            format!("{{\"script\": \"x\", \"ignored\": {}}}", deep(200)),
        ] {
            assert_eq!(parse_job(&s, body.as_bytes()).unwrap_err().kind, ErrorKind::InvalidJson);
        }
        let fine = format!("{{\"script\": \"x\", \"input\": {}}}", deep(100));
        assert!(parse_job(&s, fine.as_bytes()).is_ok());
    }

    #[test]
    fn invalid_utf8_is_invalid_json() {
        let s = Settings::defaults();
        let err = parse_job(&s, b"{\"script\": \"\xff\"}").unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidJson);
    }
}
