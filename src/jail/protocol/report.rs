//! Runner to host: the frame a runner sends on the result channel after `ready`, read with
//! a cap and parsed strictly (whatever the script could have written there is refused).

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The deepest result passed on. `json.dumps` under Python's default recursion limit stops
/// short of it; a deeper value was forged on the script's pipe or built after raising that
/// limit, and few clients' JSON parsers would take it.
pub const MAX_RESULT_DEPTH: usize = 1000;

/// The runner's own accounting: wall time from the script's start, CPU time and peak resident
/// memory of everything it reaped. The host may replace cpu and peak with cgroup counters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Usage {
    pub wall_ms: f64,
    pub cpu_ms: f64,
    pub peak_memory_bytes: u64,
}

/// One file `collect` brought back, read inside the jail by the runner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectedFile {
    pub base64: String,
    pub size: u64,
    pub media_type: String,
}

/// The ok frame's payload. Strict: the value is only the script's, so a value text that tried
/// to add keys of its own (`1,"files":{..}`) meets the runner's real ones as duplicates.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OkPayload {
    value: Box<RawValue>,
    #[serde(default)]
    files: Option<BTreeMap<String, CollectedFile>>,
    usage: Usage,
}

/// What the runner reported.
#[derive(Debug)]
pub enum Report {
    /// `main()` returned.
    Value {
        /// The JSON text exactly as `json.dumps` wrote it.
        value: Box<RawValue>,
        /// The collected files (by path relative to the working directory); None when the
        /// request had no `collect`.
        files: Option<BTreeMap<String, CollectedFile>>,
        usage: Usage,
    },
    /// The script failed in a way the runner classified.
    Error {
        kind: String,
        fields: Map<String, Value>,
        usage: Option<Usage>,
    },
    /// The script's process ended before its answer was sent: before `main()` returned, or
    /// after it (`after_main`: a thread or an atexit function ended it).
    Exited {
        exit_code: Option<i64>,
        signal: Option<i64>,
        after_main: bool,
        usage: Option<Usage>,
    },
}

#[derive(Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Nothing (or only `ready`) arrived: the runner died without reporting.
    Missing,
    /// Something arrived that is not a frame of the protocol.
    Malformed(&'static str),
    /// More than the limit arrived (`read_frame` stopped reading).
    TooLarge,
    /// A value nested deeper than `MAX_RESULT_DEPTH`.
    TooDeep,
}

/// Reads one frame: a `tag length` line, then exactly `length` bytes. Stops early on EOF (the
/// parser then says what is missing) or once more than `limit` bytes have come.
pub async fn read_frame<R: AsyncRead + Unpin>(result: &mut R, limit: usize) -> Result<Vec<u8>, FrameError> {
    let mut frame = Vec::new();
    let mut expected: Option<usize> = None;
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        if let Some(total) = expected {
            if frame.len() >= total {
                frame.truncate(total);
                return if total > limit {
                    Err(FrameError::TooLarge)
                } else {
                    Ok(frame)
                };
            }
        }
        if frame.len() > limit {
            return Err(FrameError::TooLarge);
        }
        let n = match result.read(&mut buffer).await {
            Ok(0) | Err(_) => return Ok(frame),
            Ok(n) => n,
        };
        frame.extend_from_slice(&buffer[..n]);
        if expected.is_none() {
            if let Some(newline) = frame.iter().position(|&b| b == b'\n') {
                let length = std::str::from_utf8(&frame[..newline])
                    .ok()
                    .and_then(|head| head.split_once(' '))
                    .and_then(|(_, n)| n.parse::<usize>().ok());
                // A length near usize::MAX must not wrap around to a short frame.
                match length.and_then(|length| newline.checked_add(1)?.checked_add(length)) {
                    Some(total) => expected = Some(total),
                    // Not a frame header, or a length no frame can have.
                    None if length.is_some() => return Err(FrameError::Malformed("bad frame length")),
                    // Not a frame header: let the parser say so.
                    None => return Ok(frame),
                }
            } else if frame.len() > 64 {
                return Ok(frame);
            }
        }
    }
}

fn take_usage(fields: &mut Map<String, Value>) -> Option<Usage> {
    fields.remove("usage").and_then(|u| serde_json::from_value(u).ok())
}

/// How deeply a JSON text nests its arrays and objects (the text is valid JSON): what a
/// recursive parser would go through, for a body's `input` as for a result.
pub fn nesting(json: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    for b in outside_strings(json) {
        match b {
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// The bytes of a valid JSON text that are not in a string (strings, quotes included, are
/// left out: in valid JSON a separator always stands between a string and anything else).
pub fn outside_strings(json: &str) -> impl Iterator<Item = u8> + '_ {
    let (mut in_string, mut escaped) = (false, false);
    json.bytes().filter(move |&b| {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            return false;
        }
        in_string = b == b'"';
        !in_string
    })
}

/// Parses what the result channel carried after `ready\n`. `collecting`: the request had
/// `collect`, so an ok frame has `files` (and else has none: the value text cannot add them).
pub fn parse_frame(bytes: &[u8], collecting: bool) -> Result<Report, FrameError> {
    if bytes.is_empty() {
        return Err(FrameError::Missing);
    }
    let newline = bytes
        .iter()
        .position(|&b| b == b'\n')
        .ok_or(FrameError::Malformed("no frame header"))?;
    let header = std::str::from_utf8(&bytes[..newline]).map_err(|_| FrameError::Malformed("header is not text"))?;
    let (tag, length) = header
        .split_once(' ')
        .ok_or(FrameError::Malformed("bad frame header"))?;
    let length: usize = length.parse().map_err(|_| FrameError::Malformed("bad frame length"))?;
    let payload = &bytes[newline + 1..];
    if payload.len() != length {
        return Err(FrameError::Malformed("frame length does not match"));
    }
    let text = std::str::from_utf8(payload).map_err(|_| FrameError::Malformed("payload is not UTF-8"))?;
    match tag {
        "ok" => {
            let ok: OkPayload =
                serde_json::from_str(text).map_err(|_| FrameError::Malformed("result is not the runner's JSON"))?;
            if ok.files.is_some() != collecting {
                return Err(FrameError::Malformed(
                    "files where the request collected none, or none where it did",
                ));
            }
            if nesting(ok.value.get()) > MAX_RESULT_DEPTH {
                return Err(FrameError::TooDeep);
            }
            Ok(Report::Value {
                value: ok.value,
                files: ok.files,
                usage: ok.usage,
            })
        }
        "error" => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(mut fields)) => match fields.remove("kind") {
                Some(Value::String(kind)) => {
                    let usage = take_usage(&mut fields);
                    Ok(Report::Error { kind, fields, usage })
                }
                _ => Err(FrameError::Malformed("error frame without a kind")),
            },
            _ => Err(FrameError::Malformed("error frame is not an object")),
        },
        "exited" => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(mut fields)) => Ok(Report::Exited {
                exit_code: fields.get("exit_code").and_then(Value::as_i64),
                signal: fields.get("signal").and_then(Value::as_i64),
                after_main: fields.get("after_main").and_then(Value::as_bool).unwrap_or(false),
                usage: take_usage(&mut fields),
            }),
            _ => Err(FrameError::Malformed("exited frame is not an object")),
        },
        _ => Err(FrameError::Malformed("unknown frame")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USAGE: &str = r#"{"wall_ms":1.5,"cpu_ms":0.25,"peak_memory_bytes":1024}"#;

    #[test]
    fn value_frames_keep_the_json_text_byte_for_byte() {
        let text = r#"{"big": 123456789012345678901234567890, "f": 0.1000000000000000055511151231257827}"#;
        let payload = format!(r#"{{"value":{text},"usage":{USAGE}}}"#);
        let frame = format!("ok {}\n{}", payload.len(), payload);
        match parse_frame(frame.as_bytes(), false).unwrap() {
            Report::Value { value, files, usage } => {
                assert_eq!(value.get(), text);
                assert_eq!(files, None);
                assert_eq!(usage.peak_memory_bytes, 1024);
                assert_eq!(usage.wall_ms, 1.5);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn value_frames_with_files() {
        let payload = format!(
            r#"{{"value":null,"files":{{"chart.png":{{"base64":"iVBORw==","size":4,"media_type":"image/png"}}}},"usage":{USAGE}}}"#
        );
        match parse_frame(format!("ok {}\n{payload}", payload.len()).as_bytes(), true).unwrap() {
            Report::Value { value, files, .. } => {
                assert_eq!(value.get(), "null");
                let files = files.unwrap();
                assert_eq!(files["chart.png"].size, 4);
                assert_eq!(files["chart.png"].media_type, "image/png");
                assert_eq!(files["chart.png"].base64, "iVBORw==");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_value_text_cannot_add_keys_of_its_own() {
        for payload in [
            // The value text tries to inject files, or usage, before the runner's own.
            format!(r#"{{"value":1,"files":{{}},"files":{{}},"usage":{USAGE}}}"#),
            format!(r#"{{"value":1,"usage":{USAGE},"usage":{USAGE}}}"#),
            format!(r#"{{"value":1,"extra":2,"usage":{USAGE}}}"#),
            // No usage, or no value.
            r#"{"value":1}"#.to_string(),
            format!(r#"{{"usage":{USAGE}}}"#),
        ] {
            let frame = format!("ok {}\n{payload}", payload.len());
            assert!(parse_frame(frame.as_bytes(), false).is_err(), "{payload}");
        }
    }

    #[test]
    fn files_come_only_with_collect() {
        let ok = |payload: String| format!("ok {}\n{payload}", payload.len());
        // A value text `1,"files":{..}` where the request collected nothing.
        let forged = ok(format!(
            r#"{{"value":1,"files":{{"../x":{{"base64":"!!","size":7,"media_type":"text/html"}}}},"usage":{USAGE}}}"#
        ));
        assert_eq!(
            parse_frame(forged.as_bytes(), false).unwrap_err(),
            FrameError::Malformed("files where the request collected none, or none where it did")
        );
        // A request with collect always gets files (`{}` when nothing matched).
        let without = ok(format!(r#"{{"value":1,"usage":{USAGE}}}"#));
        assert!(parse_frame(without.as_bytes(), true).is_err());
        assert!(parse_frame(without.as_bytes(), false).is_ok());
    }

    #[test]
    fn nesting_counts_arrays_and_objects_outside_strings() {
        assert_eq!(nesting(r#"[{"a": "[[[\"]"}, [1]]"#), 2);
        assert_eq!(nesting("1"), 0);
        assert_eq!(nesting(&format!("{}{}", "[".repeat(300), "]".repeat(300))), 300);
    }

    #[test]
    fn values_nested_too_deeply_are_refused() {
        let nested = |depth: usize, open: &str, close: &str| format!("{}1{}", open.repeat(depth), close.repeat(depth));
        let frame = |value: String| {
            let payload = format!(r#"{{"value":{value},"usage":{USAGE}}}"#);
            format!("ok {}\n{payload}", payload.len())
        };
        assert!(parse_frame(frame(nested(MAX_RESULT_DEPTH, "[", "]")).as_bytes(), false).is_ok());
        assert_eq!(
            parse_frame(frame(nested(MAX_RESULT_DEPTH + 1, "[", "]")).as_bytes(), false).unwrap_err(),
            FrameError::TooDeep
        );
        assert_eq!(
            parse_frame(frame(nested(MAX_RESULT_DEPTH + 1, r#"{"a":"#, "}")).as_bytes(), false).unwrap_err(),
            FrameError::TooDeep
        );
        // Brackets inside strings (escaped quotes included) are text, not nesting.
        let text = format!(r#"["\"{}", "\\"]"#, "[".repeat(5000));
        assert_eq!(nesting(&text), 1);
        assert!(parse_frame(frame(text).as_bytes(), false).is_ok());
    }

    #[test]
    fn error_and_exit_frames() {
        let body = format!(r#"{{"kind":"runtime_error","message":"ValueError: x","usage":{USAGE}}}"#);
        match parse_frame(format!("error {}\n{body}", body.len()).as_bytes(), false).unwrap() {
            Report::Error { kind, fields, usage } => {
                assert_eq!(kind, "runtime_error");
                assert_eq!(fields["message"], "ValueError: x");
                assert!(!fields.contains_key("usage"));
                assert_eq!(usage.unwrap().cpu_ms, 0.25);
            }
            other => panic!("{other:?}"),
        }
        match parse_frame(b"exited 13\n{\"signal\": 9}", false).unwrap() {
            Report::Exited {
                exit_code,
                signal,
                after_main,
                usage,
            } => assert_eq!((exit_code, signal, after_main, usage), (None, Some(9), false, None)),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_length_that_would_wrap_around_is_rejected() {
        let header = format!("ok {}\n", usize::MAX - 4);
        let frame = format!("{header}1");
        let read = read_frame(&mut frame.as_bytes(), 1 << 20).await;
        assert_eq!(read, Err(FrameError::Malformed("bad frame length")));
    }

    #[test]
    fn forged_or_broken_frames_are_rejected() {
        assert_eq!(parse_frame(b"", false).unwrap_err(), FrameError::Missing);
        assert!(parse_frame(b"ok 5\n{\"a\"", false).is_err());
        assert!(parse_frame(b"ok 3\n{1}", false).is_err());
        assert!(parse_frame(b"ok 99\n1", false).is_err());
        assert!(parse_frame(b"ok 1\n12", false).is_err());
        assert!(parse_frame(b"ok 1\n1", false).is_err());
        assert!(parse_frame(b"hello", false).is_err());
        assert!(parse_frame(b"error 2\n[]", false).is_err());
        assert!(parse_frame(b"teapot 1\n1", false).is_err());
    }
}
