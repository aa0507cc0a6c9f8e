//! The service's life: settings → isolation probe → capacity → pool → serve until the shutdown
//! signal → drain → stop the pool → remove the cgroups. Returns the process's exit code.

use crate::config::{self, Settings, StrategyChoice};
use crate::exec::admission::Admission;
use crate::exec::Executor;
use crate::fields;
use crate::http::{self, App};
use crate::jail::zygote::Launchers;
use crate::jail::{cgroup, probe, Launcher};
use crate::logging::{self, Severity};
use crate::pool::Pool;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;

/// Memory the service keeps for itself before sizing executions by memory.
pub const SERVICE_MEMORY_BYTES: u64 = 256 << 20;

/// How many executions run at once and how many warm jails wait per flavour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    pub slots: usize,
    pub pool_size: usize,
}

impl Capacity {
    /// From the settings, or else from this machine's CPUs and memory.
    pub fn of(settings: &Settings) -> Capacity {
        let slots = settings.max_concurrent.unwrap_or_else(|| {
            let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
            default_slots(
                cpus,
                available_memory().unwrap_or(u64::MAX),
                settings.limits.memory_bytes,
            )
        });
        // Warm jails per flavour: by default as many as can run at once (a warm jail is
        // taken by an execution, so it counts against that execution's memory share).
        let pool_size = settings.pool_size.unwrap_or(slots.min(config::MAX_POOL_SIZE));
        Capacity { slots, pool_size }
    }
}

/// Executions at once: one per CPU twice over (scripts often wait), bounded by how many
/// full-size jails fit in `memory` after the service's own share.
pub fn default_slots(cpus: usize, memory: u64, memory_per_jail: u64) -> usize {
    let by_memory = (memory.saturating_sub(SERVICE_MEMORY_BYTES) / memory_per_jail.max(1)) as usize;
    (2 * cpus).min(by_memory).clamp(1, config::MAX_SLOTS)
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

/// Most the soft limit on open files is raised to.
const OPEN_FILES_CEILING: u64 = 1 << 20;

/// Raises the soft limit on open files to the hard one: every connection, idle ones too, holds
/// a descriptor, and every jail holds pipes; at the usual soft limit (1024) a few hundred idle
/// connections would leave jails none, and executions would fail. (nsjail.cfg sets each
/// jail's own limit.)
fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit on a struct we own.
    let raised = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return;
        }
        let wanted = limit.rlim_max.min(OPEN_FILES_CEILING);
        if wanted <= limit.rlim_cur {
            return;
        }
        limit.rlim_cur = wanted;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0
    };
    if !raised {
        logging::warning(
            "cannot raise the limit on open files",
            fields! {"error" => std::io::Error::last_os_error().to_string()},
        );
    }
}

/// Why the service stops before serving: a CRITICAL log line (what Cloud Logging shows) and
/// the same on stderr (what a terminal or `docker run` shows). The process's exit code.
fn not_started(message: &str, fields: serde_json::Map<String, serde_json::Value>, said: String) -> i32 {
    logging::log(Severity::Critical, message, fields);
    eprintln!("python-executor: {said}");
    1
}

fn warm_flavours(settings: &Settings) -> Vec<&'static str> {
    crate::jail::Flavour::ALL
        .iter()
        .filter(|f| f.is_warm(settings.warm))
        .map(|f| f.as_str())
        .collect()
}

/// Runs the service until `shutdown` resolves (with the signal's name); returns the exit code.
pub async fn run(settings: Settings, shutdown: impl Future<Output = &'static str>) -> i32 {
    let started = Instant::now();
    raise_open_file_limit();
    // Fail closed: without a working sandbox the service does not start at all.
    let (launcher, probe) = match probe::probe(&settings).await {
        Ok(found) => found,
        Err(message) => {
            // What the probe ran: the settings to look at when it is not what they should be.
            let message = format!(
                "{message} (NSJAIL_PATH={}, NSJAIL_CONFIG={}, SANDBOX_PYTHON={})",
                settings.nsjail_path.display(),
                settings.nsjail_config.display(),
                settings.sandbox_python.display()
            );
            return not_started(
                "refusing to start: no working sandbox",
                fields! {"reason" => message},
                format!("refusing to start: {message}"),
            );
        }
    };
    let cgroups = launcher.isolation.cgroups.clone();
    let nsjail = Arc::new(launcher);
    let mut capacity = Capacity::of(&settings);
    let launcher = match settings.strategy {
        StrategyChoice::Zygote | StrategyChoice::Auto => {
            match Launchers::zygote(nsjail.clone(), settings.limits, settings.warm).await {
                Ok(zygotes) => zygotes,
                Err(why) if settings.strategy == StrategyChoice::Zygote => {
                    return not_started(
                        "refusing to start: SANDBOX_STRATEGY=zygote does not work here",
                        fields! {"reason" => why},
                        format!("refusing to start: zygote mode: {why}"),
                    )
                }
                Err(why) => {
                    logging::warning(
                        "zygote mode is not available; using the pool",
                        fields! {"reason" => why},
                    );
                    Launchers::nsjail(nsjail)
                }
            }
        }
        StrategyChoice::Pool | StrategyChoice::Cold => Launchers::nsjail(nsjail),
    };
    // Zygotes fork each execution as it comes: no pool beside them. `cold`: none at all.
    if launcher.zygotes_ready().is_some() || settings.strategy == StrategyChoice::Cold {
        capacity.pool_size = 0;
    }
    let strategy = launcher.strategy(capacity.pool_size > 0);
    let launcher = Arc::new(launcher);
    let admission = Arc::new(Admission::new(
        capacity.slots,
        settings.queue_limit,
        settings.queue_timeout,
    ));
    let limits = settings.limits;
    let pool = (capacity.pool_size > 0).then(|| {
        Pool::new(
            launcher.clone(),
            capacity.pool_size,
            settings.pool_max_idle,
            limits.memory_bytes,
            limits.timeout,
            settings.warm,
        )
    });
    logging::info(
        "sandbox ready",
        fields! {
            "isolation" => launcher.nsjail.isolation.describe(),
            "strategy" => strategy.as_str(),
            "python" => probe.python.version.clone(),
            "probe_ms" => probe.took.as_millis() as u64,
            "skipped" => probe.skipped,
            "slots" => capacity.slots,
            "pool_size" => capacity.pool_size,
            "warm_flavours" => warm_flavours(&settings),
        },
    );

    let listener = match TcpListener::bind(("0.0.0.0", settings.port)).await {
        Ok(listener) => listener,
        Err(e) => {
            return not_started(
                "cannot listen",
                fields! {"port" => settings.port, "error" => e.to_string()},
                format!("cannot listen on port {}: {e}", settings.port),
            )
        }
    };
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(settings.port);
    if let Some(pool) = &pool {
        // Requests first: the pool refills only while an execution slot is free.
        let admission = admission.clone();
        tokio::spawn(pool.clone().refill(move || admission.in_use() >= admission.capacity()));
    }
    let executor = Executor::new(launcher, admission, pool.clone(), limits);
    let app = Arc::new(App::new(settings, executor, probe.python));
    logging::info(
        "listening",
        fields! {"port" => port, "startup_ms" => started.elapsed().as_millis() as u64},
    );

    http::serve(listener, app.clone(), shutdown).await;
    if let Some(pool) = &pool {
        pool.stop();
    }
    app.executor.launcher.stop();
    drop(app);
    if let Some(cgroups) = cgroups {
        // Jails dropped just now may still be removing their cgroups: this removes what is left.
        let _ = tokio::task::spawn_blocking(move || cgroups.remove()).await;
    }
    logging::info("stopped", fields! {});
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_derived_from_the_machine_fit_in_the_services_ids() {
        assert_eq!(default_slots(2, 24 << 30, 512 << 20), 4);
        assert_eq!(default_slots(8, 2 << 30, 512 << 20), 3);
        assert_eq!(default_slots(4096, u64::MAX, 1), config::MAX_SLOTS);
    }
}
