//! Jails: what one is asked to be (`JailSpec`), how it ended (`Execution`), and the seam
//! every way of starting one goes through (`Launcher`, `Jail`). Today's launcher is nsjail's
//! (`nsjail`); a second one (forking jails from a pre-imported process, say) slots in beside
//! it without touching `exec` or `http`, which only know these traits.
//!
//! Every deadline of a jail's life is defined here, once (`deadline`), and so is every
//! isolation fact the service states (`JAIL_UID`, `IsolationFacts`).

pub mod cgroup;
pub mod ids;
pub mod nsjail;
pub mod output;
pub mod probe;
pub mod protocol;
pub mod zygote;

pub use output::Captured;
pub use protocol::{CollectedFile, FileContent, InputFile, Report, RunRequest, Usage};

use serde::Serialize;
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Modules a "data" jail has imported before its script arrives.
pub const DATA_LIBRARIES: &[&str] = &["numpy", "pandas"];

/// Modules a "chart" jail has imported before its script arrives. Not in every data jail:
/// pyplot doubles a data jail's start-up time (about 1 s more) for the scripts that never draw.
pub const CHART_LIBRARIES: &[&str] = &["numpy", "pandas", "matplotlib.pyplot"];

/// The user and group a script runs as inside a user namespace (nobody/nogroup). Outside,
/// every jail is a host uid and gid of its own (`ids`); without a user namespace, that is
/// what the script sees too.
pub const JAIL_UID: u32 = 65534;

/// Every deadline of a jail's life, in one place.
pub mod deadline {
    use std::time::Duration;

    /// How long a jail may take to load its interpreter (and numpy/pandas) before it counts
    /// as a sandbox failure.
    pub const START: Duration = Duration::from_secs(30);
    /// The start-up probe's jail: to become ready, then to run the probe script.
    pub const PROBE_START: Duration = Duration::from_secs(15);
    pub const PROBE_RUN: Duration = Duration::from_secs(15);
    /// nsjail's own wall-clock limit lies this far behind a jail's lifetime...
    pub const WALL_BACKSTOP: Duration = Duration::from_secs(5);
    /// ...and RLIMIT_CPU this far (both only backstops behind the service's own clock).
    pub const CPU_BACKSTOP: Duration = Duration::from_secs(2);
    /// Once an execution ended: how long its output pipes may take to drain, and how long
    /// nsjail may take to report how a runner that vanished ended.
    pub const DRAIN: Duration = Duration::from_secs(2);
    /// A pool refill that failed is retried after this pause.
    pub const REFILL_RETRY: Duration = Duration::from_secs(1);

    /// The lifetime of a jail started for one request: start, then the script's time limit.
    pub fn cold(timeout: Duration) -> Duration {
        START + timeout
    }

    /// The lifetime of a warm jail: start, wait in the pool, then the script's time limit.
    pub fn warm(max_idle: Duration, timeout: Duration) -> Duration {
        START + max_idle + timeout
    }

    /// The probe's jail: start and run, nothing more.
    pub fn probe() -> Duration {
        PROBE_START + PROBE_RUN
    }
}

/// The isolation the start-up probe settled on, which a launcher puts in force.
#[derive(Debug, Clone)]
pub struct Isolation {
    pub user_namespace: bool,
    pub cgroups: Option<std::sync::Arc<cgroup::Cgroups>>,
}

impl Isolation {
    pub fn describe(&self) -> String {
        format!(
            "{} user namespace, {}",
            if self.user_namespace { "with" } else { "without" },
            match &self.cgroups {
                Some(c) => format!("cgroup {} limits", c.version().as_str()),
                None => "rlimits only (no cgroups)".into(),
            }
        )
    }
}

/// What a jail imports before its script arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flavour {
    Plain,
    /// numpy and pandas already imported.
    Data,
    /// numpy, pandas and matplotlib.pyplot already imported.
    Chart,
}

impl Flavour {
    pub const ALL: [Flavour; 3] = [Flavour::Plain, Flavour::Data, Flavour::Chart];

    /// Whether jails of this flavour are made ready before their first request.
    pub fn is_warm(self, warm: crate::config::WarmFlavours) -> bool {
        match self {
            Flavour::Plain => true,
            Flavour::Data => warm.data,
            Flavour::Chart => warm.chart,
        }
    }

    pub fn modules(self) -> &'static [&'static str] {
        match self {
            Flavour::Plain => &[],
            Flavour::Data => DATA_LIBRARIES,
            Flavour::Chart => CHART_LIBRARIES,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Flavour::Plain => "plain",
            Flavour::Data => "data",
            Flavour::Chart => "chart",
        }
    }
}

/// What a jail is asked to be.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JailSpec {
    pub flavour: Flavour,
    /// The jail's memory limit: the service's, or lower for one request.
    pub memory_bytes: u64,
    /// A warm jail is started ahead of demand (for the pool): it loads everything the runner
    /// may need, and gets CPU only when requests leave some over until `Jail::to_foreground`.
    pub warm: bool,
    /// How long the jail may exist at all, waiting in a pool included.
    pub lifetime: Duration,
    /// How long its runner may take to become ready.
    pub start_within: Duration,
}

impl JailSpec {
    /// A jail for one request with this time limit.
    pub fn cold(flavour: Flavour, memory_bytes: u64, timeout: Duration) -> JailSpec {
        JailSpec {
            flavour,
            memory_bytes,
            warm: false,
            lifetime: deadline::cold(timeout),
            start_within: deadline::START,
        }
    }

    /// A jail for the pool, which waits at most `max_idle` for its request.
    pub fn warm(flavour: Flavour, memory_bytes: u64, max_idle: Duration, timeout: Duration) -> JailSpec {
        JailSpec {
            flavour,
            memory_bytes,
            warm: true,
            lifetime: deadline::warm(max_idle, timeout),
            start_within: deadline::START,
        }
    }

    /// The start-up probe's jail.
    pub fn probe(memory_bytes: u64) -> JailSpec {
        JailSpec {
            flavour: Flavour::Plain,
            memory_bytes,
            warm: false,
            lifetime: deadline::probe(),
            start_within: deadline::PROBE_START,
        }
    }

    /// nsjail's wall-clock limit: a backstop behind the service's own clock.
    pub fn wall_backstop(&self) -> Duration {
        self.lifetime + deadline::WALL_BACKSTOP
    }

    /// RLIMIT_CPU: the CPU-time backstop (SIGXCPU reads as a timeout).
    pub fn cpu_backstop(&self) -> Duration {
        self.lifetime + deadline::CPU_BACKSTOP
    }
}

/// Why a jail could not be started: the service's problem, never the script's.
#[derive(Debug)]
pub struct JailError {
    pub message: String,
    /// The tail of the launcher's own log (nsjail's), for the service's logs only.
    pub log: String,
    /// The jail's interpreter ended before it was ready, rather than the host failing to
    /// start it or it being slow: what its limits did to it (a memory limit too low for
    /// Python to start, say), not a passing fault.
    pub ended_before_ready: bool,
}

impl JailError {
    pub fn new(message: impl Into<String>) -> JailError {
        JailError {
            message: message.into(),
            log: String::new(),
            ended_before_ready: false,
        }
    }
}

/// How an execution ended, as seen from the host.
#[derive(Debug)]
pub enum Ending {
    /// The runner reported (a value, an error, or the script's process exiting).
    Reported(Report),
    /// The wall-time limit ran out; the jail was killed.
    TimedOut,
    /// The service stopped it (its shutdown grace ran out); the jail was killed.
    Stopped,
    /// The kernel killed the jail (or part of it) for exceeding its memory limit.
    OutOfMemory,
    /// The result frame grew past the result limit (plus the frame's own overhead).
    ResultTooLarge,
    /// The result is nested deeper than `protocol::MAX_RESULT_DEPTH`.
    ResultTooDeep,
    /// The result channel carried something that is not the protocol: the script tampered.
    Corrupted(&'static str),
    /// The runner vanished without a report (and not for memory): exit status of the jail.
    Vanished {
        exit_code: Option<i32>,
        signal: Option<i32>,
    },
}

/// How one execution went: its ending, the script's output, and what it cost.
#[derive(Debug)]
pub struct Execution {
    pub ending: Ending,
    pub stdout: Captured,
    pub stderr: Captured,
    pub accounting: Accounting,
}

/// The host's own accounting of one execution, from the script's hand-off to its end.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Accounting {
    pub wall: Duration,
    /// CPU time of every process in the jail, where its cgroup keeps it.
    pub cpu: Option<Duration>,
    /// The jail's memory high-water mark, where its cgroup keeps it.
    pub peak_memory_bytes: Option<u64>,
}

/// The isolation a launcher has in force, as `/health` states it.
#[derive(Debug, Clone, Serialize)]
pub struct IsolationFacts {
    pub summary: String,
    pub namespaces: Vec<&'static str>,
    pub user_namespace: bool,
    /// "v1" or "v2", or none (rlimits only).
    pub cgroup: Option<&'static str>,
    pub resource_limits: &'static str,
    pub seccomp: bool,
    pub uid: u32,
    pub network: &'static str,
}

/// Starts jails. Implementations: `nsjail::Nsjail`, and `zygote::Launchers` in front of it.
pub trait Launcher: Send + Sync + 'static {
    type Jail: Jail;

    /// Starts a jail for `spec` and waits until its runner is ready for a script.
    fn start(&self, spec: JailSpec) -> impl Future<Output = Result<Self::Jail, JailError>> + Send;

    /// The isolation its jails get.
    fn facts(&self) -> IsolationFacts;

    /// With zygotes in force: whether each flavour's is ready (for `/health`).
    fn zygotes_ready(&self) -> Option<Vec<(Flavour, bool)>> {
        None
    }

    /// With zygotes in force: whether each flavour's next zygote is being started.
    fn zygotes_starting(&self) -> Option<Vec<(Flavour, bool)>> {
        None
    }
}

/// A `stop` for `Jail::run` that nothing turns (the start-up probe's and the zygote check's
/// own executions): its sender is gone.
pub fn never_stopped() -> watch::Receiver<bool> {
    watch::channel(false).1
}

/// A started jail whose runner waits for its one script.
pub trait Jail: Send + 'static {
    /// When the jail was started (a warm jail retires after the pool's idle limit).
    fn started(&self) -> Instant;

    /// Whether the jail still runs (a warm jail may have been killed while it waited).
    fn is_alive(&mut self) -> bool;

    /// A warm jail is about to serve a request: from now on it competes for CPU like any.
    fn to_foreground(&self);

    /// Hands over the script and waits for the end: a report, the time limit, the jail
    /// dying, or `stop` turning true (the service stops it). Consumes the jail: it is
    /// destroyed afterwards, whatever happened.
    fn run<'a>(
        self,
        request: RunRequest<'a>,
        timeout: Duration,
        stop: watch::Receiver<bool>,
    ) -> impl Future<Output = Execution> + Send + 'a;
}
