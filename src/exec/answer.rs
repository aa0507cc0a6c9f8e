//! How an execution ended → the API's success or error.

use super::job::{Job, Success};
use crate::error::{ApiError, ErrorKind};
use crate::jail::protocol::{Usage, MAX_RESULT_DEPTH};
use crate::jail::{Accounting, Captured, Ending, Execution, Report};
use serde_json::{Map, Value};
use std::time::Duration;

/// Maps how an execution ended to the API's answer.
pub fn interpret(execution: Execution, job: &Job, result_limit: usize) -> Result<Success, ApiError> {
    let Execution {
        ending,
        stdout,
        stderr,
        accounting,
    } = execution;
    let limit_mb = job.memory_bytes / (1024 * 1024);
    let mut reported = None;
    let error = match ending {
        Ending::Reported(Report::Value { value, files, usage }) => {
            return Ok(Success {
                result: value,
                stdout,
                stderr,
                files,
                usage: usage_of(Some(usage), &accounting),
            })
        }
        Ending::Reported(Report::Error { kind, fields, usage }) => {
            let error = runner_error(&kind, fields, limit_mb, result_limit);
            if error.kind == ErrorKind::SyntaxError {
                // CPython's compiler refused what only it checks (`return` outside a
                // function, ...): the script never started, so no output and no usage, as
                // when the validator refuses it.
                return Err(error);
            }
            reported = usage;
            error
        }
        Ending::Reported(Report::Exited {
            exit_code,
            signal,
            after_main,
            usage,
        }) => {
            reported = usage;
            exited(exit_code, signal, after_main, job, usage_of(usage, &accounting).wall_ms)
        }
        Ending::TimedOut => timeout(job.timeout),
        Ending::Stopped => ApiError::new(
            ErrorKind::Unavailable,
            "the service is shutting down and stopped this execution before it ended; retry",
        ),
        Ending::OutOfMemory => memory_limit(limit_mb),
        Ending::ResultTooLarge => result_too_large(result_limit),
        Ending::ResultTooDeep => ApiError::new(
            ErrorKind::ResultNotJson,
            format!("main() returned a value nested too deeply for JSON (over {MAX_RESULT_DEPTH} levels)"),
        ),
        Ending::Corrupted(why) => ApiError::new(
            ErrorKind::ResultNotJson,
            format!("the script corrupted the result channel ({why})"),
        ),
        Ending::Vanished { exit_code, signal } => {
            // The runner always reports how the script's process ended, and a script cannot
            // kill its runner (PID 1 of the jail; no ptrace, no prlimit on it): a runner gone
            // without a report was killed from outside (its zygote died, the host's OOM
            // killer, an operator). Not the script's doing: the client may retry.
            crate::logging::error(
                "a jail ended without a report",
                crate::fields! {"exit_code" => exit_code, "signal" => signal},
            );
            ApiError::new(
                ErrorKind::Unavailable,
                "the sandbox ended this execution without a report (not the script's doing); retry",
            )
        }
    };
    let usage = usage_of(reported, &accounting);
    Err(with_output(error, &stdout, &stderr).with("usage", serde_json::to_value(usage).unwrap_or_default()))
}

/// An execution's usage: the cgroup's counters where the jail has them (the sandbox's own
/// accounting, every process included), else what the runner counted of the processes it
/// reaped; the runner's wall time when it reported (from the script's start), else the host's.
fn usage_of(reported: Option<Usage>, host: &Accounting) -> Usage {
    let ms = |d: Duration| (d.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0;
    Usage {
        wall_ms: reported.map_or(ms(host.wall), |u| u.wall_ms),
        cpu_ms: host.cpu.map(ms).or(reported.map(|u| u.cpu_ms)).unwrap_or(0.0),
        peak_memory_bytes: host
            .peak_memory_bytes
            .or(reported.map(|u| u.peak_memory_bytes))
            .unwrap_or(0),
    }
}

fn with_output(mut error: ApiError, stdout: &Captured, stderr: &Captured) -> ApiError {
    error.fields.insert("stdout".into(), stdout.text().into());
    error.fields.insert("stderr".into(), stderr.text().into());
    if stdout.truncated {
        error.fields.insert("stdout_truncated".into(), true.into());
    }
    if stderr.truncated {
        error.fields.insert("stderr_truncated".into(), true.into());
    }
    error
}

fn timeout(limit: Duration) -> ApiError {
    let seconds = limit.as_secs_f64();
    ApiError::new(
        ErrorKind::Timeout,
        format!("the script ran longer than the {seconds} s time limit"),
    )
    .with("limit_seconds", seconds)
}

fn result_too_large(result_limit: usize) -> ApiError {
    ApiError::new(
        ErrorKind::ResultTooLarge,
        format!("the result is larger than the {result_limit}-byte limit"),
    )
    .with("limit_bytes", result_limit)
}

/// A lowered memory limit under which Python itself cannot start: the limit was reached
/// before the script ran, and only a higher `memory_mb` helps.
pub fn too_little_memory_to_start(limit_mb: u64) -> ApiError {
    ApiError::new(
        ErrorKind::MemoryLimit,
        format!("Python cannot start within a {limit_mb} MiB memory limit here; raise memory_mb"),
    )
    .with("limit_mb", limit_mb)
}

fn memory_limit(limit_mb: u64) -> ApiError {
    ApiError::new(
        ErrorKind::MemoryLimit,
        format!("the script exceeded the {limit_mb} MiB memory limit"),
    )
    .with("limit_mb", limit_mb)
}

/// `wall_ms`: how long the script ran; `after_main`: main() had returned its value (a thread or
/// an atexit function ended the process before the answer was sent).
fn exited(exit_code: Option<i64>, signal: Option<i64>, after_main: bool, job: &Job, wall_ms: f64) -> ApiError {
    let when = if after_main {
        "after main() returned, before its value was sent (a thread or an atexit function ended it)"
    } else {
        "before main() returned"
    };
    match (exit_code, signal) {
        // RLIMIT_CPU, the CPU-time backstop of the time limit, is only ever reached after the
        // time limit: a SIGXCPU sooner is the script's own (`os.kill(os.getpid(), SIGXCPU)`).
        (_, Some(sig)) if sig == i64::from(libc::SIGXCPU) && wall_ms >= job.timeout.as_secs_f64() * 1000.0 => {
            timeout(job.timeout)
        }
        (_, Some(sig)) => ApiError::new(
            ErrorKind::Exited,
            format!(
                "the script's process was killed by signal {sig} ({}) {when}",
                signal_name(sig)
            ),
        )
        .with("signal", sig),
        (Some(code), None) => ApiError::new(ErrorKind::Exited, format!("the script exited with code {code} {when}"))
            .with("exit_code", code),
        (None, None) => ApiError::new(ErrorKind::Exited, format!("the script's process ended {when}")),
    }
}

fn signal_name(sig: i64) -> &'static str {
    match sig as i32 {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGSYS => "SIGSYS",
        libc::SIGXCPU => "SIGXCPU",
        _ => "signal",
    }
}

/// An error the runner classified. Only the fields each kind documents are passed on, with
/// the types the contract gives them.
fn runner_error(kind: &str, fields: Map<String, Value>, limit_mb: u64, result_limit: usize) -> ApiError {
    let message = fields
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("the script failed")
        .to_string();
    let Some(kind) = ErrorKind::from_runner(kind) else {
        return ApiError::new(
            ErrorKind::ResultNotJson,
            "the script corrupted the result channel (unknown error kind)",
        );
    };
    let mut error = ApiError::new(kind, message.clone());
    match kind {
        ErrorKind::SyntaxError => {
            let number = |key: &str| fields.get(key).and_then(Value::as_u64).unwrap_or(1).max(1);
            let (class, message) = match message.split_once(": ") {
                Some((class, rest)) if ["SyntaxError", "IndentationError", "TabError"].contains(&class) => {
                    (class, rest)
                }
                _ => ("SyntaxError", message.as_str()),
            };
            error = ApiError::syntax_error(class, message, number("line"), number("column"));
        }
        ErrorKind::RuntimeError => {
            if let Some(Value::Object(exception)) = fields.get("exception") {
                let text = |key: &str| exception.get(key).and_then(Value::as_str).unwrap_or("").to_string();
                error = error.with(
                    "exception",
                    serde_json::json!({"type": text("type"), "message": text("message")}),
                );
            }
            if let Some(Value::String(traceback)) = fields.get("traceback") {
                error = error.with("traceback", traceback.clone());
            }
        }
        ErrorKind::MemoryLimit => {
            error = memory_limit(limit_mb);
            if let Some(Value::String(traceback)) = fields.get("traceback") {
                error = error.with("traceback", traceback.clone());
            }
        }
        ErrorKind::ResultTooLarge => {
            // Collected files over their count or the cap: the runner's message names which.
            let message = match (fields.get("cause").and_then(Value::as_str), fields.get("message")) {
                (Some("collect"), Some(Value::String(message))) => message.clone(),
                _ => format!("the result is larger than the {result_limit}-byte limit"),
            };
            error = ApiError::new(ErrorKind::ResultTooLarge, message).with("limit_bytes", result_limit);
        }
        _ => {}
    }
    error
}
