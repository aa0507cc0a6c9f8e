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
    let member = |name: &str| -> Result<Option<Value>, ApiError> {
        members
            .get(name)
            .map(|raw| serde_json::from_str::<Value>(raw.get()).map_err(invalid_json))
            .transpose()
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
    let timeout = match member("timeout_seconds")?.as_ref() {
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
    let memory_bytes = match member("memory_mb")?.as_ref() {
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
        members.get("files").copied(),
        members.get("collect").copied(),
        members.get("include").copied(),
    )?;
    Ok((script, timeout, memory_bytes, data))
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
