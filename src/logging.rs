//! Structured logs: one JSON object per line on stdout, with `severity` and `message`, the two
//! fields Cloud Logging reads. Never the script, its output or the service's environment.

use serde_json::{Map, Value};
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Info,
    Warning,
    Error,
    Critical,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "INFO",
            Severity::Warning => "WARNING",
            Severity::Error => "ERROR",
            Severity::Critical => "CRITICAL",
        }
    }
}

/// Writes one log line. `fields` are added beside `severity`, `message` and `time`.
pub fn log(severity: Severity, message: &str, fields: Map<String, Value>) {
    let mut line = Map::with_capacity(fields.len() + 3);
    line.insert("severity".into(), severity.as_str().into());
    line.insert("message".into(), message.into());
    line.insert("time".into(), rfc3339_now().into());
    line.extend(fields);
    let mut text = Value::Object(line).to_string();
    text.push('\n');
    // A closed stdout must not take the service down with it. Written synchronously, also
    // from async workers: one small write that only blocks when whoever reads the logs
    // (Cloud Run, Docker) has stopped reading for a whole pipe buffer; a writer thread would
    // then have to block or drop lines all the same, and dropping the security log is worse.
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

pub fn info(message: &str, fields: Map<String, Value>) {
    log(Severity::Info, message, fields)
}

pub fn warning(message: &str, fields: Map<String, Value>) {
    log(Severity::Warning, message, fields)
}

/// A panic anywhere (a caught parser fault included) is one JSON log line, not Rust's
/// free-text report on stderr.
pub fn log_panics_as_json() {
    std::panic::set_hook(Box::new(|panic| {
        let what = panic
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let place = panic
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let thread = std::thread::current().name().unwrap_or("unnamed").to_string();
        log(
            Severity::Error,
            "panic",
            crate::fields! {"panic" => what, "location" => place, "thread" => thread},
        );
    }));
}

pub fn error(message: &str, fields: Map<String, Value>) {
    log(Severity::Error, message, fields)
}

/// Builds the `fields` map of a log line: `fields!{"port" => 8080}`.
#[macro_export]
macro_rules! fields {
    () => { serde_json::Map::new() };
    ($($key:literal => $value:expr),+ $(,)?) => {{
        let mut map = serde_json::Map::new();
        $( map.insert($key.to_string(), serde_json::json!($value)); )+
        map
    }};
}

fn rfc3339_now() -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_micros()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_from_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(20_513), (2026, 3, 1));
    }
}
