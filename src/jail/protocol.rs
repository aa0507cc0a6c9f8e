//! The service's side of the runner protocol (the runner itself is `src/runner.py`, compiled
//! into the binary and passed to the sandbox's Python with `-c`).
//!
//! Host to runner, on the jail's stdin: one JSON header line, then the script's bytes.
//! Runner to host, on fd 3 (the result channel): `ready\n`, then one frame
//! `ok <n>\n<json>`, `error <n>\n<json object>` or `exited <n>\n<json object>`.

use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncReadExt};

pub const RUNNER_SOURCE: &str = include_str!("../runner.py");

/// The first thing a runner says once its interpreter (and flavour modules) are loaded.
pub const READY: &[u8] = b"ready\n";

/// What one execution asks of the runner.
#[derive(Debug, Clone)]
pub struct RunRequest<'a> {
    pub script: &'a str,
    pub result_limit_bytes: usize,
}

impl RunRequest<'_> {
    pub fn encode(&self) -> Vec<u8> {
        let mut header = Map::new();
        header.insert("script_bytes".into(), self.script.len().into());
        header.insert("result_limit_bytes".into(), self.result_limit_bytes.into());
        let mut out = Value::Object(header).to_string().into_bytes();
        out.push(b'\n');
        out.extend_from_slice(self.script.as_bytes());
        out
    }
}

/// What the runner reported.
#[derive(Debug)]
pub enum Report {
    /// `main()` returned; the JSON text exactly as `json.dumps` wrote it.
    Value(Box<RawValue>),
    /// The script failed in a way the runner classified.
    Error { kind: String, fields: Map<String, Value> },
    /// The script's process ended before `main()` returned.
    Exited {
        exit_code: Option<i64>,
        signal: Option<i64>,
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

/// Parses what the result channel carried after `ready\n`.
pub fn parse_frame(bytes: &[u8]) -> Result<Report, FrameError> {
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
            let raw: Box<RawValue> =
                serde_json::from_str(text).map_err(|_| FrameError::Malformed("result is not JSON"))?;
            Ok(Report::Value(raw))
        }
        "error" => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(mut fields)) => match fields.remove("kind") {
                Some(Value::String(kind)) => Ok(Report::Error { kind, fields }),
                _ => Err(FrameError::Malformed("error frame without a kind")),
            },
            _ => Err(FrameError::Malformed("error frame is not an object")),
        },
        "exited" => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(fields)) => Ok(Report::Exited {
                exit_code: fields.get("exit_code").and_then(Value::as_i64),
                signal: fields.get("signal").and_then(Value::as_i64),
            }),
            _ => Err(FrameError::Malformed("exited frame is not an object")),
        },
        _ => Err(FrameError::Malformed("unknown frame")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_is_a_header_line_then_the_script() {
        let req = RunRequest {
            script: "def main():\n  return 'é'\n",
            result_limit_bytes: 10,
        };
        let bytes = req.encode();
        let newline = bytes.iter().position(|&b| b == b'\n').unwrap();
        let header: Value = serde_json::from_slice(&bytes[..newline]).unwrap();
        assert_eq!(header["script_bytes"], req.script.len());
        assert_eq!(&bytes[newline + 1..], req.script.as_bytes());
    }

    #[test]
    fn value_frames_keep_the_json_text_byte_for_byte() {
        let text = r#"{"big": 123456789012345678901234567890, "f": 0.1000000000000000055511151231257827}"#;
        let frame = format!("ok {}\n{}", text.len(), text);
        match parse_frame(frame.as_bytes()).unwrap() {
            Report::Value(raw) => assert_eq!(raw.get(), text),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn error_and_exit_frames() {
        let body = r#"{"kind":"runtime_error","message":"ValueError: x"}"#;
        match parse_frame(format!("error {}\n{body}", body.len()).as_bytes()).unwrap() {
            Report::Error { kind, fields } => {
                assert_eq!(kind, "runtime_error");
                assert_eq!(fields["message"], "ValueError: x");
            }
            other => panic!("{other:?}"),
        }
        match parse_frame(b"exited 13\n{\"signal\": 9}").unwrap() {
            Report::Exited { exit_code, signal } => assert_eq!((exit_code, signal), (None, Some(9))),
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
        assert_eq!(parse_frame(b"").unwrap_err(), FrameError::Missing);
        assert!(parse_frame(b"ok 5\n{\"a\"").is_err());
        assert!(parse_frame(b"ok 3\n{1}").is_err());
        assert!(parse_frame(b"ok 99\n1").is_err());
        assert!(parse_frame(b"ok 1\n12").is_err());
        assert!(parse_frame(b"hello").is_err());
        assert!(parse_frame(b"error 2\n[]").is_err());
        assert!(parse_frame(b"teapot 1\n1").is_err());
    }
}
