//! One execution, start to end: admit (wait for a slot), get a jail (warm from the pool, or a
//! new one from the launcher), run, and turn how it ended into the API's answer (`answer`).

pub mod admission;
pub mod answer;
mod job;

pub use job::{Include, Job, JobData, Success};

use crate::config::Limits;
use crate::error::{ApiError, ErrorKind};
use crate::jail::{Flavour, Jail, JailSpec, Launcher, RunRequest};
use crate::pool::Pool;
use admission::Admission;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Where the time went, for Server-Timing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Timings {
    pub queue: Duration,
    pub sandbox: Duration,
}

pub struct Executor<L: Launcher> {
    pub launcher: Arc<L>,
    pub admission: Arc<Admission>,
    /// Warm single-use jails; `None` when POOL_SIZE=0 (every execution starts its own).
    pub pool: Option<Arc<Pool<L>>>,
    /// The service's limits (a request may lower the time and memory limits).
    pub limits: Limits,
    /// Set when the shutdown grace is over: executions still running are stopped.
    stopping: watch::Sender<bool>,
}

impl<L: Launcher> Executor<L> {
    pub fn new(launcher: Arc<L>, admission: Arc<Admission>, pool: Option<Arc<Pool<L>>>, limits: Limits) -> Executor<L> {
        Executor {
            launcher,
            admission,
            pool,
            limits,
            stopping: watch::Sender::new(false),
        }
    }

    /// Shutting down: requests still waiting for a slot, and any that come, are refused
    /// (`unavailable`) rather than started; the ones running go on.
    pub fn close(&self) {
        self.admission.close();
    }

    /// The shutdown grace is over: every execution still running is stopped (its jail
    /// killed) and answered `unavailable`, not blamed on its script.
    pub fn stop_running(&self) {
        self.stopping.send_replace(true);
    }

    /// A jail of this flavour, ready for its script: from the pool if one is waiting, else new.
    /// A request that lowers the memory limit gets a new jail created with that limit, so the
    /// limit holds the same way on every host (a warm jail's is the service's).
    async fn jail(&self, flavour: Flavour, timeout: Duration, memory_bytes: u64) -> Result<L::Jail, ApiError> {
        if memory_bytes >= self.limits.memory_bytes {
            if let Some(jail) = self.pool.as_ref().and_then(|pool| pool.take(flavour)) {
                return Ok(jail);
            }
        }
        self.launcher
            .start(JailSpec::cold(flavour, memory_bytes, timeout))
            .await
            .map_err(|e| {
                // Jails at the service's own limit start (the probe and the pool prove it): one
                // whose interpreter ended before it was ready under a lowered limit cannot start
                // under that limit, and asking again would not change that.
                if e.ended_before_ready && memory_bytes < self.limits.memory_bytes {
                    crate::logging::warning(
                        "python cannot start under a request's lowered memory limit",
                        crate::fields! {"memory_mb" => memory_bytes >> 20, "reason" => e.message, "nsjail_log" => e.log},
                    );
                    return answer::too_little_memory_to_start(memory_bytes >> 20);
                }
                crate::logging::error(
                    "a jail failed to start",
                    crate::fields! {"reason" => e.message, "nsjail_log" => e.log},
                );
                ApiError::new(ErrorKind::Unavailable, "the sandbox cannot start; retry later")
            })
    }

    pub async fn run(&self, mut job: Job, timings: &mut Timings) -> Result<Success, ApiError> {
        let queued = Instant::now();
        let admitted = self.admission.admit().await;
        timings.queue = queued.elapsed(); // also for a request refused after waiting
        let _slot = admitted?;

        let started = Instant::now();
        let lowered_memory = job.memory_bytes < self.limits.memory_bytes;
        // A lowered memory limit may be too small to import numpy and pandas ahead of the
        // script: its jail imports nothing, and the script meets the limit itself (an honest
        // memory_limit rather than a jail that cannot start).
        let flavour = match (&job.info, lowered_memory) {
            (_, true) => Flavour::Plain,
            (info, false) if info.imports_chart_library => Flavour::Chart,
            (info, false) if info.imports_data_libraries => Flavour::Data,
            _ => Flavour::Plain,
        };
        let jail = match self.jail(flavour, job.timeout, job.memory_bytes).await {
            // A flavour whose imports cannot start (they do not fit a small MEMORY_LIMIT_MB,
            // say) must not refuse scripts a plain jail can run: the script imports what it
            // needs itself, and meets the limit itself if it must.
            Err(error) if error.kind == ErrorKind::Unavailable && flavour != Flavour::Plain => {
                self.jail(Flavour::Plain, job.timeout, job.memory_bytes).await?
            }
            jail => jail?,
        };
        let data = std::mem::take(&mut job.data);
        let request = RunRequest {
            input: data.input,
            files: data.files,
            collect: data.collect,
            ..RunRequest::new(&job.script, self.limits.max_result_bytes)
        };
        job.data.include = data.include;
        let execution = jail.run(request, job.timeout, self.stopping.subscribe()).await;
        timings.sandbox = started.elapsed();
        answer::interpret(execution, &job, self.limits.max_result_bytes)
    }
}
