//! A pool of pre-started, single-use jails, one queue per flavour (plain, or with numpy and
//! pandas imported). A pooled jail is a complete jail whose runner has loaded its interpreter
//! and waits for a script; it serves exactly one execution and is then destroyed, exactly
//! like a cold one. Jails that waited longer than `max_idle` are retired unused.
//!
//! Refills run in the background, one jail at a time, only while an execution slot is free,
//! and with the lowest CPU weight of their cgroup until taken, so they never take CPU from
//! requests.
//! When a flavour runs dry, executions start cold jails instead of waiting.

use crate::admission::Admission;
use crate::sandbox::{Flavour, Jail, Sandbox};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

const FLAVOURS: [Flavour; 2] = [Flavour::Plain, Flavour::Data];
/// Demand is counted over this window to size each flavour's share of the pool.
const DEMAND_WINDOW: Duration = Duration::from_secs(30);
/// How long a jail may take to load before the refill gives up on it.
const START_TIMEOUT: Duration = Duration::from_secs(30);

struct Shelf {
    ready: VecDeque<Jail>,
    /// When executions of this flavour asked for a jail, within the demand window.
    demand: VecDeque<Instant>,
}

pub struct Pool {
    sandbox: Arc<Sandbox>,
    /// Upper bound of ready jails per flavour.
    size: usize,
    max_idle: Duration,
    /// How long a jail may live: waiting in the pool, then its execution, then a margin.
    lifetime: Duration,
    shelves: [Mutex<Shelf>; 2],
    wake: Notify,
    stopped: AtomicBool,
}

fn index(flavour: Flavour) -> usize {
    match flavour {
        Flavour::Plain => 0,
        Flavour::Data => 1,
    }
}

impl Pool {
    pub fn new(sandbox: Arc<Sandbox>, size: usize, max_idle: Duration) -> Arc<Pool> {
        let lifetime = Pool::lifetime_for(max_idle, sandbox.limits.timeout);
        let shelf = || {
            Mutex::new(Shelf {
                ready: VecDeque::new(),
                demand: VecDeque::new(),
            })
        };
        Arc::new(Pool {
            sandbox,
            size,
            max_idle,
            lifetime,
            shelves: [shelf(), shelf()],
            wake: Notify::new(),
            stopped: AtomicBool::new(false),
        })
    }

    /// A ready jail of this flavour, if one is waiting. Never waits for a refill.
    pub fn take(&self, flavour: Flavour) -> Option<Jail> {
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
                if jail.started.elapsed() < self.max_idle && jail.is_alive() {
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

    /// Adds a ready jail made elsewhere (the start-up probe's spare).
    pub fn offer(&self, jail: Jail) {
        if let Ok(mut shelf) = self.shelves[index(Flavour::Plain)].lock() {
            shelf.ready.push_back(jail);
        }
    }

    /// How long a pooled jail may live at most: waiting, then its execution, then a margin.
    pub fn lifetime_for(max_idle: Duration, timeout: Duration) -> Duration {
        max_idle + timeout + START_TIMEOUT
    }

    /// How many ready jails a flavour should have: its recent demand, at least one, at most `size`.
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
        recent.clamp(1, self.size)
    }

    pub fn size(&self) -> usize {
        self.size
    }

    pub fn ready(&self, flavour: Flavour) -> usize {
        self.shelves[index(flavour)].lock().map(|s| s.ready.len()).unwrap_or(0)
    }

    /// Keeps the shelves stocked until `stop`. Runs as one background task.
    pub async fn refill(self: Arc<Pool>, admission: Arc<Admission>) {
        while !self.stopped.load(Ordering::Acquire) {
            self.retire_stale();
            let needy = FLAVOURS.into_iter().find(|&f| self.ready(f) < self.target(f));
            // Requests first: refill only while an execution slot is free.
            let busy = admission.in_use() >= admission.capacity();
            match needy {
                Some(flavour) if !busy => {
                    if let Some(jail) = self.start(flavour).await {
                        if self.stopped.load(Ordering::Acquire) {
                            break;
                        }
                        if let Ok(mut shelf) = self.shelves[index(flavour)].lock() {
                            shelf.ready.push_back(jail);
                        }
                    } else {
                        // Failing starts are logged by `start`; do not spin on them.
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
                _ => {
                    let _ = tokio::time::timeout(Duration::from_millis(500), self.wake.notified()).await;
                }
            }
        }
    }

    async fn start(&self, flavour: Flavour) -> Option<Jail> {
        let mut jail = match self
            .sandbox
            .spawn(flavour, self.lifetime, true, self.sandbox.limits.memory_bytes)
        {
            Ok(jail) => jail,
            Err(e) => {
                crate::logging::error("pool: cannot start a jail", crate::fields! {"reason" => e.message});
                return None;
            }
        };
        match jail.wait_ready(START_TIMEOUT).await {
            Ok(()) => Some(jail),
            Err(e) => {
                crate::logging::error(
                    "pool: a jail failed to start",
                    crate::fields! {"reason" => e.message, "nsjail_log" => e.nsjail_log},
                );
                None
            }
        }
    }

    fn retire_stale(&self) {
        for shelf in &self.shelves {
            let retired: Vec<Jail> = match shelf.lock() {
                Ok(mut shelf) => {
                    let (keep, retire): (VecDeque<Jail>, VecDeque<Jail>) =
                        shelf.ready.drain(..).partition(|j| j.started.elapsed() < self.max_idle);
                    shelf.ready = keep;
                    retire.into_iter().collect()
                }
                Err(_) => Vec::new(),
            };
            drop(retired);
        }
    }

    /// Stops refilling and destroys every waiting jail.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.wake.notify_one();
        for shelf in &self.shelves {
            let drained: Vec<Jail> = shelf
                .lock()
                .map(|mut s| s.ready.drain(..).collect())
                .unwrap_or_default();
            drop(drained);
        }
    }
}
