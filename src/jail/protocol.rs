//! The service's side of the runner protocol, v2 (the runner itself is `runner.py` with its
//! parts, compiled into the binary and passed to the sandbox's Python with `-c`, or as its
//! code, marshalled by that Python at start-up, behind `RUNNER_BOOTSTRAP`).
//!
//! Host to runner, on the jail's stdin: one JSON header line `{"script_bytes": S,
//! "request_bytes": R}`, the script's S bytes, then R bytes of a JSON object with the
//! execution's data (`result_limit_bytes`; `input`, `files`, `collect`, `max_files` when the
//! request had them).
//! Runner to host, on fd 3 (the result channel): `ready\n`, then one frame
//! `ok <n>\n{"value":..,"files":{..},"usage":{..}}`, `error <n>\n{"kind":..,..,"usage":{..}}`
//! or `exited <n>\n{"exit_code"|"signal":N,"usage":{..}}` (read and parsed in `report`).

mod report;

pub use report::{
    nesting, outside_strings, parse_frame, read_frame, CollectedFile, FrameError, Report, Usage, MAX_RESULT_DEPTH,
};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// The runner: one module in six files, its parts first (see `runner.py`'s docstring).
pub const RUNNER_SOURCE: &str = concat!(
    include_str!("../runner/files.py"),
    include_str!("../runner/python_builtins.py"),
    include_str!("../runner/result_json.py"),
    include_str!("../runner/script.py"),
    include_str!("../runner/ending.py"),
    include_str!("../runner.py")
);

/// What a jail's interpreter runs (`-c`) when the runner comes compiled: the runner's code
/// object, marshalled by the sandbox's own Python at start-up (`jail::probe`) and passed in
/// base64 as the first argument, which it takes out of `sys.argv` before the runner sees it.
/// Compiling `runner.py` costs every jail ~4 ms of CPU; loading its code, a tenth of that.
pub const RUNNER_BOOTSTRAP: &str =
    "exec(__import__('marshal').loads(__import__('binascii').a2b_base64(__import__('sys').argv.pop(1))))";

/// A compiled runner longer than this (in base64) is not used: one argument of a command line
/// may not exceed 128 KiB (MAX_ARG_STRLEN), and the runner's source then serves as before.
pub const MAX_COMPILED_RUNNER: usize = 100_000;

/// The first thing a runner says once its interpreter (and flavour modules) are loaded.
pub const READY: &[u8] = b"ready\n";

/// How many files `collect` may bring back when the request does not lower it.
pub const DEFAULT_MAX_FILES: usize = 100;

/// A file written into the script's working directory before it runs. The path is checked by
/// the HTTP layer (relative, `/`-separated, no empty, `.` or `..` component, no NUL) and again
/// by the runner; base64 is checked by both too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InputFile {
    pub path: String,
    #[serde(flatten)]
    pub content: FileContent,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileContent {
    /// Written as UTF-8.
    Text(String),
    /// Standard base64 with padding; written as the bytes it decodes to.
    Base64(String),
}

/// What one execution asks of the runner.
#[derive(Debug, Clone)]
pub struct RunRequest<'a> {
    pub script: &'a str,
    /// Cap on the whole ok payload: the value's JSON plus the collected files.
    pub result_limit_bytes: usize,
    /// The request's `input`, passed to main as its argument (None: the request had none).
    pub input: Option<Box<RawValue>>,
    pub files: Vec<InputFile>,
    /// Glob patterns (per path component, `**` any number of directories); None: no `collect`,
    /// and the ok frame has no `files`.
    pub collect: Option<Vec<String>>,
    /// Cap on the number of collected files.
    pub max_files: usize,
}

/// The request object as the runner reads it.
#[derive(Serialize)]
struct Wire<'r> {
    result_limit_bytes: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    input: Option<&'r RawValue>,
    #[serde(skip_serializing_if = "<[InputFile]>::is_empty")]
    files: &'r [InputFile],
    #[serde(skip_serializing_if = "Option::is_none")]
    collect: Option<&'r [String]>,
    max_files: usize,
}

impl<'a> RunRequest<'a> {
    /// A request with no data in or out: a script and its result cap, as before v2.
    pub fn new(script: &'a str, result_limit_bytes: usize) -> RunRequest<'a> {
        RunRequest {
            script,
            result_limit_bytes,
            input: None,
            files: Vec::new(),
            collect: None,
            max_files: DEFAULT_MAX_FILES,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let wire = Wire {
            result_limit_bytes: self.result_limit_bytes,
            input: self.input.as_deref(),
            files: &self.files,
            collect: self.collect.as_deref(),
            max_files: self.max_files,
        };
        // Serialising plain strings, numbers and already-valid JSON text cannot fail.
        let body = serde_json::to_vec(&wire).unwrap_or_else(|_| b"{}".to_vec());
        let mut header = Map::new();
        header.insert("script_bytes".into(), self.script.len().into());
        header.insert("request_bytes".into(), body.len().into());
        let mut out = Value::Object(header).to_string().into_bytes();
        out.push(b'\n');
        out.reserve(self.script.len() + body.len());
        out.extend_from_slice(self.script.as_bytes());
        out.extend_from_slice(&body);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(bytes: &[u8]) -> (Value, &[u8]) {
        let newline = bytes.iter().position(|&b| b == b'\n').unwrap();
        (
            serde_json::from_slice(&bytes[..newline]).unwrap(),
            &bytes[newline + 1..],
        )
    }

    #[test]
    fn request_is_a_header_line_the_script_then_the_request_object() {
        let req = RunRequest::new("def main():\n  return 'é'\n", 10);
        let bytes = req.encode();
        let (header, rest) = split(&bytes);
        let script_bytes = header["script_bytes"].as_u64().unwrap() as usize;
        assert_eq!(script_bytes, req.script.len());
        assert_eq!(&rest[..script_bytes], req.script.as_bytes());
        let body = &rest[script_bytes..];
        assert_eq!(header["request_bytes"].as_u64().unwrap() as usize, body.len());
        // Without data in or out, only the limits: no input, files or collect key.
        assert_eq!(body, br#"{"result_limit_bytes":10,"max_files":100}"#);
    }

    #[test]
    fn request_data_is_passed_as_data() {
        let mut req = RunRequest::new("def main(x):\n  return x\n", 10);
        req.input = Some(RawValue::from_string(r#"{"big": 123456789012345678901234567890}"#.into()).unwrap());
        req.files = vec![
            InputFile {
                path: "a/b.csv".into(),
                content: FileContent::Text("x,y\n".into()),
            },
            InputFile {
                path: "c.bin".into(),
                content: FileContent::Base64("AAE=".into()),
            },
        ];
        req.collect = Some(vec!["*.png".into()]);
        req.max_files = 3;
        let bytes = req.encode();
        let (header, rest) = split(&bytes);
        let body = &rest[header["script_bytes"].as_u64().unwrap() as usize..];
        let text = std::str::from_utf8(body).unwrap();
        assert!(
            text.contains(r#""input":{"big": 123456789012345678901234567890}"#),
            "input kept byte for byte: {text}"
        );
        let body: Value = serde_json::from_str(text).unwrap();
        assert_eq!(
            body["files"],
            serde_json::json!([{"path": "a/b.csv", "text": "x,y\n"}, {"path": "c.bin", "base64": "AAE="}])
        );
        assert_eq!(body["collect"], serde_json::json!(["*.png"]));
        assert_eq!(body["max_files"], 3);
        // `null` input is input.
        req.input = Some(RawValue::from_string("null".into()).unwrap());
        let bytes = req.encode();
        assert!(std::str::from_utf8(&bytes).unwrap().contains(r#""input":null"#));
    }
}
