//! `GET /health`: the service's state as it is: the isolation the launcher has in force, the
//! limits of the configuration in force, the slots, the validator threads and the pool (ready
//! and starting jails) right now.

use crate::config::Settings;
use crate::error::{ApiError, ErrorKind};
use crate::exec::Executor;
use crate::jail::probe::SandboxPython;
use crate::jail::{Flavour, Launcher};
use crate::validation::ParserThreads;
use serde_json::{json, Map, Value};

/// The body of `/health`; unavailable while the service is `draining`.
pub fn health<L: Launcher>(
    settings: &Settings,
    executor: &Executor<L>,
    python: &SandboxPython,
    parser: &ParserThreads,
    draining: bool,
) -> Result<Value, ApiError> {
    if draining {
        return Err(ApiError::new(ErrorKind::Unavailable, "shutting down"));
    }
    let limits = &executor.limits;
    let admission = &executor.admission;
    let mut body = Map::new();
    body.insert("status".into(), "ok".into());
    body.insert(
        "isolation".into(),
        serde_json::to_value(executor.launcher.facts()).map_err(|_| ApiError::internal())?,
    );
    body.insert("python".into(), python.version.clone().into());
    body.insert("packages".into(), json!(python.packages));
    body.insert(
        "limits".into(),
        json!({
            "timeout_seconds": limits.timeout.as_secs_f64(),
            "memory_mb": limits.memory_bytes / (1024 * 1024),
            "max_processes": limits.max_processes,
            "max_body_bytes": settings.max_body_bytes,
            "max_script_bytes": settings.max_script_bytes,
            "max_output_bytes": limits.max_output_bytes,
            "max_result_bytes": limits.max_result_bytes,
            "max_concurrent": admission.capacity(),
        }),
    );
    body.insert(
        "slots".into(),
        json!({"capacity": admission.capacity(), "in_use": admission.in_use(), "waiting": admission.waiting()}),
    );
    body.insert(
        "validation".into(),
        json!({"capacity": parser.capacity(), "in_use": parser.in_use(), "waiting": parser.waiting()}),
    );
    let by_flavour = |states: Vec<(Flavour, bool)>| -> Value {
        Value::Object(
            states
                .into_iter()
                .map(|(f, b)| (f.as_str().to_string(), b.into()))
                .collect(),
        )
    };
    let strategy = match (executor.launcher.zygotes_ready(), &executor.pool) {
        (Some(ready), _) => {
            body.insert("zygotes".into(), by_flavour(ready));
            let starting = executor.launcher.zygotes_starting().unwrap_or_default();
            body.insert("zygotes_starting".into(), by_flavour(starting));
            "zygote"
        }
        (None, Some(_)) => "pool",
        (None, None) => "cold",
    };
    body.insert("strategy".into(), strategy.into());
    if let Some(pool) = &executor.pool {
        let per_flavour = |count: &dyn Fn(Flavour) -> usize| -> Map<String, Value> {
            Flavour::ALL
                .iter()
                .map(|f| (f.as_str().to_string(), count(*f).into()))
                .collect()
        };
        body.insert(
            "pool".into(),
            json!({
                "size_per_flavour": pool.size(),
                "ready": per_flavour(&|f| pool.ready(f)),
                "starting": per_flavour(&|f| pool.starting(f)),
            }),
        );
    }
    Ok(Value::Object(body))
}
