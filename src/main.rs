//! python-executor: runs untrusted Python scripts in an nsjail sandbox behind a small HTTP API.
//!
//! Start-up: settings (config) → isolation probe (isolation) → admission limits → serve (http)
//! until SIGTERM, then drain in-flight executions and exit 0.

mod admission;
mod cgroup;
mod config;
mod error;
mod executor;
mod http;
mod isolation;
mod logging;
mod pool;
mod runner;
mod sandbox;
mod validation;

use crate::admission::Admission;
use crate::config::Settings;
use crate::executor::Executor;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;

fn main() {
    let started = Instant::now();
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(message) => {
            logging::log(logging::Severity::Critical, &message, fields! {});
            eprintln!("python-executor: {message}");
            std::process::exit(2);
        }
    };
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 8);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_stack_size(validation::RUNTIME_STACK_BYTES)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("python-executor: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = runtime.block_on(serve(settings, started));
    std::process::exit(code);
}

async fn serve(settings: Settings, started: Instant) -> i32 {
    // Fail closed: without a working sandbox the service does not start at all.
    // With a pool, the probe also starts a spare warm jail for the first request.
    let spare_lifetime = (settings.pool_size != Some(0))
        .then(|| pool::Pool::lifetime_for(settings.pool_max_idle, settings.limits.timeout));
    let (sandbox, probe, spare) = match isolation::probe(&settings, spare_lifetime).await {
        Ok(found) => found,
        Err(message) => {
            logging::log(
                logging::Severity::Critical,
                "refusing to start: no working sandbox",
                fields! {"reason" => message},
            );
            eprintln!("python-executor: refusing to start: {message}");
            return 1;
        }
    };
    let sandbox = Arc::new(sandbox);
    let slots = settings
        .max_concurrent
        .unwrap_or_else(|| default_slots(settings.limits.memory_bytes));
    let admission = Arc::new(Admission::new(slots, settings.queue_limit, settings.queue_timeout));
    // Warm jails per flavour: by default as many as can run at once.
    let pool_size = settings.pool_size.unwrap_or(slots);
    let pool = (pool_size > 0).then(|| pool::Pool::new(sandbox.clone(), pool_size, settings.pool_max_idle));
    let isolation = &sandbox.isolation;
    let health = health_fields(&settings, &sandbox, &probe.python_version, slots);
    logging::info(
        "sandbox ready",
        fields! {
            "isolation" => isolation.describe(),
            "python" => probe.python_version,
            "probe_ms" => probe.took.as_millis() as u64,
            "skipped" => probe.skipped,
            "slots" => slots,
            "pool_size" => pool_size,
        },
    );

    let listener = match TcpListener::bind(("0.0.0.0", settings.port)).await {
        Ok(listener) => listener,
        Err(e) => {
            logging::log(
                logging::Severity::Critical,
                "cannot listen",
                fields! {"port" => settings.port, "error" => e.to_string()},
            );
            eprintln!("python-executor: cannot listen on port {}: {e}", settings.port);
            return 1;
        }
    };
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(settings.port);
    let header_read_timeout = settings.header_read_timeout;
    let grace = settings.shutdown_grace;
    let cgroups = sandbox.isolation.cgroups.clone();
    if let Some(pool) = &pool {
        if let Some(jail) = spare {
            pool.offer(jail);
        }
        tokio::spawn(pool.clone().refill(admission.clone()));
    }
    let app = Arc::new(http::App::new(
        settings,
        Executor::new(sandbox, admission, pool.clone()),
        health,
    ));
    logging::info(
        "listening",
        fields! {"port" => port, "startup_ms" => started.elapsed().as_millis() as u64},
    );

    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown_signal());
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of fds or similar: back off instead of spinning.
                        logging::warning("accept failed", fields! {"error" => e.to_string()});
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let app = app.clone();
                let service = service_fn(move |request| http::handle(app.clone(), request));
                let connection = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(header_read_timeout)
                    .max_buf_size(64 * 1024)
                    .serve_connection(TokioIo::new(stream), service);
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    let _ = connection.await;
                });
            }
            signal = &mut shutdown => {
                logging::info("shutting down: draining in-flight requests", fields! {"signal" => signal, "grace_seconds" => grace.as_secs_f64()});
                break;
            }
        }
    }
    drop(listener);
    app.draining.store(true, Ordering::Release);
    tokio::select! {
        _ = graceful.shutdown() => logging::info("drained", fields! {}),
        _ = tokio::time::sleep(grace) => logging::warning("grace period over with requests still running", fields! {}),
    }
    if let Some(pool) = &pool {
        pool.stop();
    }
    drop(app);
    if let Some(cgroups) = cgroups {
        // Jails dropped just now may still be removing their cgroups: this removes what is left.
        let _ = tokio::task::spawn_blocking(move || cgroups.remove()).await;
    }
    logging::info("stopped", fields! {});
    0
}

/// Executions at once: one per CPU twice over (scripts often wait), bounded by how many
/// full-size sandboxes fit in memory after the service's own share.
fn default_slots(memory_per_jail: u64) -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let memory = available_memory().unwrap_or(u64::MAX);
    let by_memory = (memory.saturating_sub(256 << 20) / memory_per_jail.max(1)) as usize;
    (2 * cpus).min(by_memory).max(1)
}

/// The memory limit of the service's own cgroup (a container's, say) if it has one, else the
/// machine's memory.
fn available_memory() -> Option<u64> {
    let cgroup_limit = cgroup::own_memory_limit();
    let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|text| {
        let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
        line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb * 1024)
    });
    match (cgroup_limit, total) {
        (Some(limit), Some(total)) => Some(limit.min(total)),
        (limit, total) => limit.or(total),
    }
}

fn health_fields(
    settings: &Settings,
    sandbox: &sandbox::Sandbox,
    python: &str,
    slots: usize,
) -> serde_json::Map<String, serde_json::Value> {
    let isolation = &sandbox.isolation;
    let limits = &settings.limits;
    let mut namespaces = vec!["mount", "pid", "network", "ipc", "uts", "cgroup"];
    if isolation.user_namespace {
        namespaces.push("user");
    }
    let (cgroup, resource_limits) = match &isolation.cgroups {
        Some(c) => (
            serde_json::json!(c.version().as_str()),
            if c.has_cpu() {
                "cgroup memory, pids, cpu + rlimits"
            } else {
                "cgroup memory, pids + rlimits"
            },
        ),
        None => (serde_json::Value::Null, "rlimits only"),
    };
    fields! {
        "isolation" => serde_json::json!({
            "summary": isolation.describe(),
            "namespaces": namespaces,
            "user_namespace": isolation.user_namespace,
            "cgroup": cgroup,
            "resource_limits": resource_limits,
            "seccomp": true,
            "uid": 65534,
            "network": "none",
        }),
        "python" => python,
        "limits" => serde_json::json!({
            "timeout_seconds": limits.timeout.as_secs_f64(),
            "memory_mb": limits.memory_bytes / (1024 * 1024),
            "max_processes": limits.max_processes,
            "max_body_bytes": settings.max_body_bytes,
            "max_script_bytes": settings.max_script_bytes,
            "max_output_bytes": limits.max_output_bytes,
            "max_result_bytes": limits.max_result_bytes,
            "max_concurrent": slots,
        }),
    }
}

/// Resolves with the signal's name on SIGTERM (Cloud Run, docker stop) or SIGINT (Ctrl-C).
async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        // Without signal handlers the default action (exit) still stops the service.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
