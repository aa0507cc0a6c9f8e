//! The optional data fields of an `/execute` request (`input`, `files`, `collect`,
//! `include`), checked before anything runs. Every refusal is `invalid_request` and names the
//! offending file, pattern or name.

use crate::error::{ApiError, ErrorKind};
use crate::exec::{Include, JobData};
use crate::jail::protocol::{outside_strings, FileContent, InputFile};
use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::HashSet;

/// At most this many files in (and, `jail::protocol::DEFAULT_MAX_FILES`, collected out).
pub const MAX_FILES: usize = 100;
/// At most this many `collect` patterns, each at most this long.
const MAX_PATTERNS: usize = 32;
const MAX_PATTERN_BYTES: usize = 256;
/// Linux's NAME_MAX, and a bound on a whole path well below PATH_MAX.
const MAX_COMPONENT_BYTES: usize = 255;
const MAX_PATH_BYTES: usize = 1024;

/// The longest integer Python's `json` reads (`sys.int_info.default_max_str_digits`).
const PYTHON_MAX_INT_DIGITS: usize = 4300;

/// `input`, `files`, `collect` and `include` from the request's top-level members (raw, so
/// that `input` keeps its text: big numbers and float digits reach `main` as the client
/// wrote them).
pub fn parse(
    input: Option<&RawValue>,
    files: Option<Value>,
    collect: Option<Value>,
    include: Option<Value>,
) -> Result<JobData, ApiError> {
    // `"input": null` is no input, as a client that always sends the field means it.
    let input = input.filter(|raw| raw.get().trim() != "null").map(RawValue::to_owned);
    if input
        .as_ref()
        .is_some_and(|raw| longest_integer(raw.get()) > PYTHON_MAX_INT_DIGITS)
    {
        return Err(invalid(format!(
            "\"input\" has an integer of more than {PYTHON_MAX_INT_DIGITS} digits, which Python does not read: send it as a string"
        )));
    }
    Ok(JobData {
        input,
        files: parse_files(files.unwrap_or(Value::Null))?,
        collect: parse_collect(collect.unwrap_or(Value::Null))?,
        include: parse_include(include.unwrap_or(Value::Null))?,
    })
}

/// How many digits the longest integer (no fraction, no exponent: Python reads those as
/// floats) of a valid JSON text has.
fn longest_integer(json: &str) -> usize {
    let (mut longest, mut digits, mut is_float) = (0usize, 0usize, false);
    // A final space ends the last number like any separator.
    for b in outside_strings(json).chain([b' ']) {
        match b {
            b'0'..=b'9' => digits += 1,
            b'.' | b'e' | b'E' => is_float = true,
            b'-' | b'+' => {}
            _ => {
                if !is_float {
                    longest = longest.max(digits);
                }
                (digits, is_float) = (0, false);
            }
        }
    }
    longest
}

fn invalid(message: String) -> ApiError {
    ApiError::new(ErrorKind::InvalidRequest, message)
}

fn parse_files(value: Value) -> Result<Vec<InputFile>, ApiError> {
    let object = match value {
        Value::Null => return Ok(Vec::new()),
        Value::Object(object) => object,
        _ => return Err(invalid("\"files\" must be an object of path → content".into())),
    };
    if object.len() > MAX_FILES {
        return Err(invalid(format!(
            "\"files\" has {} files, over the limit of {MAX_FILES}",
            object.len()
        )));
    }
    let mut files = Vec::with_capacity(object.len());
    for (path, content) in object {
        check_path(&path).map_err(|why| invalid(format!("\"files\": {}: {why}", quoted(&path))))?;
        let content = match content {
            Value::String(text) => FileContent::Text(text),
            Value::Object(mut fields) if fields.len() == 1 && fields.contains_key("base64") => {
                match fields.remove("base64") {
                    Some(Value::String(encoded)) if is_base64(&encoded) => FileContent::Base64(encoded),
                    _ => {
                        return Err(invalid(format!(
                            "\"files\": {}: \"base64\" is not valid base64",
                            quoted(&path)
                        )))
                    }
                }
            }
            _ => {
                return Err(invalid(format!(
                    "\"files\": {}: a content is a string or {{\"base64\": \"...\"}}",
                    quoted(&path)
                )))
            }
        };
        files.push(InputFile { path, content });
    }
    // A path cannot be a file and a directory at once ("a" and "a/b", whatever sorts between).
    let paths: HashSet<&str> = files.iter().map(|f| f.path.as_str()).collect();
    for file in &files {
        let path = file.path.as_str();
        if let Some((slash, _)) = path
            .match_indices('/')
            .find(|(slash, _)| paths.contains(&path[..*slash]))
        {
            return Err(invalid(format!(
                "\"files\": {} is a file and also a directory of {}",
                quoted(&path[..slash]),
                quoted(path)
            )));
        }
    }
    Ok(files)
}

/// A JSON string of the name, so control characters or quotes in it stay readable.
fn quoted(name: &str) -> String {
    Value::String(name.chars().take(100).collect()).to_string()
}

/// Relative, `/`-separated, no empty, `.` or `..` component, no NUL (other control characters
/// are legal in a file name, and API.md allows them).
fn check_path(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("the path is empty");
    }
    if path.len() > MAX_PATH_BYTES {
        return Err("the path is longer than 1024 bytes");
    }
    if path.starts_with('/') {
        return Err("the path must be relative");
    }
    if path.contains('\0') {
        return Err("the path has a NUL");
    }
    for component in path.split('/') {
        match component {
            "" => return Err("the path has an empty component"),
            "." | ".." => return Err("the path has a '.' or '..' component"),
            c if c.len() > MAX_COMPONENT_BYTES => return Err("a path component is longer than 255 bytes"),
            _ => {}
        }
    }
    Ok(())
}

/// Standard base64 (RFC 4648 §4): padding optional, ASCII whitespace ignored (as `base64`
/// wraps its output), nothing else.
fn is_base64(text: &str) -> bool {
    let mut digits = 0usize;
    let mut padding = 0usize;
    for b in text.bytes() {
        match b {
            b' ' | b'\t' | b'\r' | b'\n' => {}
            b'=' => padding += 1,
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'+' | b'/' if padding == 0 => digits += 1,
            _ => return false,
        }
    }
    match padding {
        0 => digits % 4 != 1,
        1 | 2 => (digits + padding) % 4 == 0,
        _ => false,
    }
}

fn parse_collect(value: Value) -> Result<Option<Vec<String>>, ApiError> {
    let items = match value {
        Value::Null => return Ok(None),
        Value::Array(items) => items,
        _ => return Err(invalid("\"collect\" must be a list of glob patterns".into())),
    };
    if items.len() > MAX_PATTERNS {
        return Err(invalid(format!(
            "\"collect\" has {} patterns, over the limit of {MAX_PATTERNS}",
            items.len()
        )));
    }
    let mut patterns = Vec::with_capacity(items.len());
    for item in items {
        let Value::String(pattern) = item else {
            return Err(invalid("\"collect\": every pattern must be a string".into()));
        };
        let why = if pattern.is_empty() {
            Some("the pattern is empty")
        } else if pattern.len() > MAX_PATTERN_BYTES {
            Some("the pattern is longer than 256 bytes")
        } else if pattern.starts_with('/') {
            Some("the pattern must be relative to the working directory")
        } else if pattern.contains('\0') {
            Some("the pattern has a NUL")
        } else if pattern.split('/').any(|c| c == "..") {
            Some("the pattern has a '..' component")
        } else {
            None
        };
        // `./*.csv` and `out/` mean what `*.csv` and `out` mean, as to glob.
        let normal = pattern
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect::<Vec<_>>()
            .join("/");
        let why = why.or_else(|| {
            normal
                .is_empty()
                .then_some("the pattern names the working directory itself")
        });
        if let Some(why) = why {
            return Err(invalid(format!("\"collect\": {}: {why}", quoted(&pattern))));
        }
        patterns.push(normal);
    }
    Ok(Some(patterns))
}

fn parse_include(value: Value) -> Result<Include, ApiError> {
    let items = match value {
        Value::Null => return Ok(Include::default()),
        Value::Array(items) => items,
        _ => {
            return Err(invalid(
                "\"include\" must be a list of names (\"usage\", \"stderr\")".into(),
            ))
        }
    };
    let mut include = Include::default();
    for item in items {
        match item.as_str() {
            Some("usage") => include.usage = true,
            Some("stderr") => include.stderr = true,
            _ => {
                return Err(invalid(format!(
                    "\"include\": {item} is not a field the answer can include (\"usage\", \"stderr\")"
                )))
            }
        }
    }
    Ok(include)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_string()).unwrap()
    }

    fn value(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    fn files(text: &str) -> Result<Vec<InputFile>, String> {
        parse(None, Some(value(text)), None, None)
            .map(|d| d.files)
            .map_err(|e| e.message)
    }

    #[test]
    fn input_keeps_its_text_and_null_is_none() {
        let big = raw("{\"n\": 123456789012345678901234567890, \"f\": 0.10000000000000000555}");
        let data = parse(Some(&big), None, None, None).unwrap();
        assert_eq!(data.input.unwrap().get(), big.get());
        assert!(parse(Some(&raw("null")), None, None, None).unwrap().input.is_none());
        assert!(parse(None, None, None, None).unwrap().input.is_none());
    }

    #[test]
    fn input_with_an_integer_python_will_not_read_is_refused() {
        let input = |text: &str| parse(Some(&raw(text)), None, None, None).map(|d| d.input.is_some());
        let digits = |n: usize| "7".repeat(n);
        assert!(input(&digits(4300)).unwrap());
        assert!(input(&format!(
            "[\"{}\", -{}.5, {}e3]",
            digits(5000),
            digits(5000),
            digits(5000)
        ))
        .unwrap());
        for bad in [
            digits(4301),
            format!("-{}", digits(4301)),
            format!("{{\"a\": [1, {}]}}", digits(4301)),
            format!("[\"x\\\"\", {}, 2.5]", digits(9000)),
        ] {
            let err = input(&bad).unwrap_err();
            assert_eq!(err.kind, ErrorKind::InvalidRequest);
            assert!(err.message.contains("4300 digits"), "{}", err.message);
        }
    }

    #[test]
    fn files_take_text_or_base64() {
        let got = files(r#"{"data.csv": "a,b\n1,2\n", "img/x.bin": {"base64": "AAEC\n/w=="}}"#).unwrap();
        assert_eq!(got.len(), 2);
        assert!(got.contains(&InputFile {
            path: "data.csv".into(),
            content: FileContent::Text("a,b\n1,2\n".into())
        }));
        assert!(files(r#"{"x": {"base64": "AAE"}}"#).is_ok());
        // Control characters other than NUL are legal in a name.
        assert!(files(r#"{"a\tb.txt": "x", "line\nbreak": "y"}"#).is_ok());
        assert!(files(r#"{"x": {"base64": ""}}"#).is_ok());
    }

    #[test]
    fn bad_paths_are_refused_by_name() {
        for (path, why) in [
            ("", "empty"),
            ("/etc/passwd", "relative"),
            ("../x", "'..'"),
            ("a/../../x", "'..'"),
            ("./x", "'.'"),
            ("a//b", "empty component"),
            ("a/", "empty component"),
            ("a\\u0000b", "NUL"),
        ] {
            let body = format!("{{\"{path}\": \"x\"}}");
            let message = files(&body).unwrap_err();
            assert!(message.contains(why), "{path}: {message}");
            assert!(message.starts_with("\"files\": \""), "{message}");
        }
        let long = "a".repeat(256);
        assert!(files(&format!("{{\"{long}\": \"x\"}}")).unwrap_err().contains("255"));
        let deep = vec!["abcdefghij"; 100].join("/");
        assert!(files(&format!("{{\"{deep}\": \"x\"}}")).unwrap_err().contains("1024"));
        assert!(files(r#"{"a": "x", "a/b": "y"}"#)
            .unwrap_err()
            .contains("also a directory"));
        assert!(files(r#"{"ab": "x", "a/b": "y"}"#).is_ok());
        // "data.csv" sorts between "data" and "data/part1.csv".
        let err = files(r#"{"data": "x", "data.csv": "y", "data/part1.csv": "z"}"#).unwrap_err();
        assert!(
            err.contains(r#""data" is a file and also a directory of "data/part1.csv""#),
            "{err}"
        );
        assert!(files(r#"{"a/b/c": "x", "a/b": "y"}"#)
            .unwrap_err()
            .contains("also a directory"));
    }

    #[test]
    fn bad_contents_are_refused_by_name() {
        for body in [
            r#"{"x": 3}"#,
            r#"{"x": null}"#,
            r#"{"x": {"base64": "@@@@"}}"#,
            r#"{"x": {"base64": "A"}}"#,
            r#"{"x": {"base64": "AA=A"}}"#,
            r#"{"x": {"base64": "AAA==="}}"#,
            r#"{"x": {"base64": 3}}"#,
            r#"{"x": {"base64": "AA==", "extra": 1}}"#,
            r#"{"x": {"text": "hi"}}"#,
        ] {
            assert!(files(body).unwrap_err().contains("\"x\""), "{body}");
        }
        assert!(files("[1]").is_err());
        let many: Vec<String> = (0..=MAX_FILES).map(|i| format!("\"f{i}\": \"\"")).collect();
        assert!(files(&format!("{{{}}}", many.join(","))).unwrap_err().contains("limit"));
    }

    #[test]
    fn collect_patterns_are_checked() {
        let collect = |text: &str| parse(None, None, Some(value(text)), None).map(|d| d.collect);
        assert_eq!(collect(r#"["*.png", "out/**/*.csv"]"#).unwrap().unwrap().len(), 2);
        assert_eq!(collect("[]").unwrap(), Some(vec![]));
        assert_eq!(collect("null").unwrap(), None);
        assert_eq!(
            collect(r#"["./*.csv", "out/", "a//b/./c"]"#).unwrap().unwrap(),
            ["*.csv", "out", "a/b/c"]
        );
        for bad in [
            r#"["/etc/*"]"#,
            r#"["../*"]"#,
            r#"["a/../../b"]"#,
            r#"[""]"#,
            r#"["./"]"#,
            r#"["."]"#,
            r#"["a\u0000"]"#,
            r#"[3]"#,
            r#""*.png""#,
        ] {
            let err = collect(bad).unwrap_err();
            assert_eq!(err.kind, ErrorKind::InvalidRequest, "{bad}");
        }
    }

    #[test]
    fn include_names_are_checked() {
        let include = |text: &str| parse(None, None, None, Some(value(text))).map(|d| d.include);
        assert_eq!(
            include(r#"["usage", "stderr"]"#).unwrap(),
            Include {
                usage: true,
                stderr: true
            }
        );
        assert_eq!(include("[]").unwrap(), Include::default());
        assert!(include(r#"["usage", "secrets"]"#)
            .unwrap_err()
            .message
            .contains("\"secrets\""));
        assert!(include(r#""usage""#).is_err());
    }
}
