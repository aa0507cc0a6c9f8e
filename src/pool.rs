//! A pool of warm, single-use jails, one queue per flavour (plain, with numpy and pandas
//! imported, or with matplotlib's pyplot as well). A warm jail is a complete jail whose runner has loaded its interpreter and waits
//! for a script; it serves exactly one execution and is then destroyed, exactly like one
//! started for its request. Jails that waited longer than `max_idle` are retired unused.
//!
//! Refills run in the background, one jail at a time, only while the caller says there is
//! room (an execution slot is free), and with the lowest CPU weight of their cgroup until
//! taken, so they never take CPU from requests.
//! When a flavour runs dry, executions start their own jails instead of waiting.
//!
//! Generic over the `Launcher`: it knows nothing of nsjail, the probe or admission.

use crate::config::WarmFlavours;
use crate::jail::{deadline, Flavour, Jail, JailSpec, Launcher};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Demand is counted over this window to size each flavour's share of the pool.
const DEMAND_WINDOW: Duration = Duration::from_secs(30);
/// How often an idle refill task looks again without being woken.
const IDLE_CHECK: Duration = Duration::from_millis(500);

struct Shelf<J> {
    ready: VecDeque<J>,
    /// When executions of this flavour asked for a jail, within the demand window.
    demand: VecDeque<Instant>,
}

pub struct Pool<L: Launcher> {
    launcher: Arc<L>,
    /// Upper bound of ready jails per flavour.
    size: usize,
    max_idle: Duration,
    /// The memory limit and time limit of the executions the jails will serve.
    memory_bytes: u64,
    timeout: Duration,
    warm: WarmFlavours,
    shelves: [Mutex<Shelf<L::Jail>>; 3],
    /// Jails being started for each shelf: with `ready`, every idle jail there is (for
    /// `/health`, where a leaked jail shows as one more than these account for).
    starting: [AtomicUsize; 3],
    wake: Notify,
    stopped: AtomicBool,
}

fn index(flavour: Flavour) -> usize {
    match flavour {
        Flavour::Plain => 0,
        Flavour::Data => 1,
        Flavour::Chart => 2,
    }
}

impl<L: Launcher> Pool<L> {
    pub fn new(
        launcher: Arc<L>,
        size: usize,
        max_idle: Duration,
        memory_bytes: u64,
        timeout: Duration,
        warm: WarmFlavours,
    ) -> Arc<Pool<L>> {
        let shelf = || {
            Mutex::new(Shelf {
                ready: VecDeque::new(),
                demand: VecDeque::new(),
            })
        };
        Arc::new(Pool {
            launcher,
            size,
            max_idle,
            memory_bytes,
            timeout,
            warm,
            shelves: [shelf(), shelf(), shelf()],
            starting: Default::default(),
            wake: Notify::new(),
            stopped: AtomicBool::new(false),
        })
    }

    /// A ready jail of this flavour, if one is waiting. Never waits for a refill.
    pub fn take(&self, flavour: Flavour) -> Option<L::Jail> {
        let mut stale = Vec::new();
        let found = {
            let Ok(mut shelf) = self.shelves[index(flavour)].lock() else {
                return None;
            };
            let now = Instant::now();
            shelf.demand.push_back(now);
            while shelf
                .demand
                .front()
                .is_some_and(|t| now.duration_since(*t) > DEMAND_WINDOW)
            {
                shelf.demand.pop_front();
            }
            let mut found = None;
            while let Some(mut jail) = shelf.ready.pop_front() {
                if jail.started().elapsed() < self.max_idle && jail.is_alive() {
                    found = Some(jail);
                    break;
                }
                stale.push(jail);
            }
            found
        };
        drop(stale);
        self.wake.notify_one();
        if let Some(jail) = &found {
            jail.to_foreground();
        }
        found
    }

    /// How many ready jails a flavour should have: its recent demand, at most `size`, and at
    /// least one for a warm flavour (`WARM_FLAVOURS`); the others are kept only while they
    /// are asked for.
    fn target(&self, flavour: Flavour) -> usize {
        let Ok(shelf) = self.shelves[index(flavour)].lock() else {
            return 0;
        };
        let now = Instant::now();
        let recent = shelf
            .demand
            .iter()
            .filter(|t| now.duration_since(**t) <= DEMAND_WINDOW)
            .count();
        let least = usize::from(flavour.is_warm(self.warm));
        recent.clamp(least, self.size.max(least))
    }

    pub fn size(&self) -> usize {
        self.size
    }

    pub fn ready(&self, flavour: Flavour) -> usize {
        self.shelves[index(flavour)].lock().map(|s| s.ready.len()).unwrap_or(0)
    }

    pub fn starting(&self, flavour: Flavour) -> usize {
        self.starting[index(flavour)].load(Ordering::Acquire)
    }

    /// Keeps the shelves stocked until `stop`. Runs as one background task; `busy` says when
    /// requests need every resource (then nothing is started).
    pub async fn refill(self: Arc<Self>, busy: impl Fn() -> bool + Send + 'static) {
        while !self.stopped.load(Ordering::Acquire) {
            self.retire_stale();
            let needy = Flavour::ALL.into_iter().find(|&f| self.ready(f) < self.target(f));
            match needy {
                Some(flavour) if !busy() => {
                    let starting = &self.starting[index(flavour)];
                    starting.fetch_add(1, Ordering::AcqRel);
                    let started = self.start(flavour).await;
                    let failed = started.is_none();
                    if let Some(jail) = started {
                        // A jail started after `stop` is destroyed here, unshelved.
                        if !self.stopped.load(Ordering::Acquire) {
                            if let Ok(mut shelf) = self.shelves[index(flavour)].lock() {
                                shelf.ready.push_back(jail);
                            }
                        }
                    }
                    // Only once shelved: a jail is never uncounted.
                    starting.fetch_sub(1, Ordering::AcqRel);
                    if failed {
                        // Failing starts are logged by `start`; do not spin on them.
                        tokio::time::sleep(deadline::REFILL_RETRY).await;
                    }
                }
                _ => {
                    let _ = tokio::time::timeout(IDLE_CHECK, self.wake.notified()).await;
                }
            }
        }
    }

    async fn start(&self, flavour: Flavour) -> Option<L::Jail> {
        let spec = JailSpec::warm(flavour, self.memory_bytes, self.max_idle, self.timeout);
        match self.launcher.start(spec).await {
            Ok(jail) => Some(jail),
            // Cut short by `stop` (the service tearing down its jails and cgroups): no failure.
            Err(_) if self.stopped.load(Ordering::Acquire) => None,
            Err(e) => {
                crate::logging::error(
                    "pool: a jail failed to start",
                    crate::fields! {"reason" => e.message, "nsjail_log" => e.log},
                );
                None
            }
        }
    }

    /// Destroys the waiting jails that waited too long, or died waiting (killed from outside:
    /// the host's OOM killer, an operator): the refill replaces them, and `/health` does not
    /// count them meanwhile.
    fn retire_stale(&self) {
        for shelf in &self.shelves {
            let mut retired = Vec::new();
            if let Ok(mut shelf) = shelf.lock() {
                let mut keep = VecDeque::new();
                for mut jail in shelf.ready.drain(..) {
                    if jail.started().elapsed() < self.max_idle && jail.is_alive() {
                        keep.push_back(jail);
                    } else {
                        retired.push(jail);
                    }
                }
                shelf.ready = keep;
            }
            drop(retired);
        }
    }

    /// Stops refilling and destroys every waiting jail.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.wake.notify_one();
        for shelf in &self.shelves {
            let drained: Vec<L::Jail> = shelf
                .lock()
                .map(|mut s| s.ready.drain(..).collect())
                .unwrap_or_default();
            drop(drained);
        }
    }
}
