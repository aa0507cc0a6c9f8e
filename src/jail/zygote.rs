//! The strategy in force (`SANDBOX_STRATEGY`) and the zygote launcher (issue 12).
//!
//! `pool` and `cold` start every jail with nsjail (`cold` has no pool). `zygote` forks each
//! execution from a zygote of its flavour (`fork`, `zygote.py`): one per flavour, started with
//! the service, replaced after `MAX_FORKS` forks or `MAX_AGE`, or as soon as it misbehaves
//! (a fork that fails, a child that never becomes ready), in the background. A data or chart
//! execution that finds its zygote starting waits for it (a zygote starts about as fast as a
//! cold jail of its flavour, and serves every execution waiting for it, where cold jails would
//! each import pandas again). A plain execution, one whose zygote cannot start, and one whose
//! fork fails get a cold nsjail jail instead: no request is lost to a zygote. Warm jails (the
//! pool's) and executions with a lowered memory limit are always nsjail's.

pub mod fork;
mod socket;

use crate::config::{Limits, WarmFlavours};
use crate::jail::cgroup::{CgroupLimits, Cgroups};
use crate::jail::nsjail::{Nsjail, NsjailJail};
use crate::jail::{deadline, Flavour, IsolationFacts, JailError, JailSpec, Launcher};
use fork::{ForkLimits, Zygote, ZygoteCommand};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// A zygote is replaced after this many forks or this age (defence in depth: whatever a child
/// could have left in it, if anything, is gone with it).
pub const MAX_FORKS: u64 = 1000;
pub const MAX_AGE: Duration = Duration::from_secs(600);
/// A zygote that failed to start is tried again after this pause.
const RESTART_PAUSE: Duration = Duration::from_secs(5);
/// How often the zygotes are looked at, so that one that died or is spent is replaced before a
/// request finds it so.
const CHECK_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Zygote,
    Pool,
    Cold,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Zygote => "zygote",
            Strategy::Pool => "pool",
            Strategy::Cold => "cold",
        }
    }
}

#[derive(Default)]
struct Slot {
    current: Option<Arc<Zygote>>,
    starting: bool,
    /// The last start failed: until one succeeds, executions do not wait for the next try.
    failing: bool,
}

/// nsjail's launcher, with zygotes in front of it when the strategy is `zygote`.
pub struct Launchers {
    pub nsjail: Arc<Nsjail>,
    zygotes: Option<Arc<Zygotes>>,
}

struct Zygotes {
    nsjail: Arc<Nsjail>,
    cgroups: Arc<Cgroups>,
    limits: Limits,
    slots: [Mutex<Slot>; 3],
    /// Woken when a flavour's zygote start ended, started or not.
    started: [Notify; 3],
    /// Set by `stop`: the service is shutting down, no zygote is started or replaced (a start
    /// under way fails as its jail is killed, which is no fault to log).
    stopped: AtomicBool,
}

fn index(flavour: Flavour) -> usize {
    match flavour {
        Flavour::Plain => 0,
        Flavour::Data => 1,
        Flavour::Chart => 2,
    }
}

impl Launchers {
    /// nsjail only (`pool`, `cold`).
    pub fn nsjail(nsjail: Arc<Nsjail>) -> Launchers {
        Launchers { nsjail, zygotes: None }
    }

    /// Proves zygote mode on this host (a zygote forks a child whose namespaces, uid, filter
    /// and cgroup are checked), then starts a zygote per warm flavour (the others start on
    /// their first request). `Err` says why it cannot be.
    pub async fn zygote(nsjail: Arc<Nsjail>, limits: Limits, warm: WarmFlavours) -> Result<Launchers, String> {
        let cgroups = match (&nsjail.isolation.cgroups, nsjail.isolation.user_namespace) {
            (Some(cgroups), true) => cgroups.clone(),
            _ => return Err("zygotes need cgroups and a user namespace".into()),
        };
        let zygotes = Arc::new(Zygotes {
            nsjail: nsjail.clone(),
            cgroups,
            limits,
            slots: Default::default(),
            started: Default::default(),
            stopped: AtomicBool::new(false),
        });
        let plain = Arc::new(zygotes.spawn(Flavour::Plain).await?);
        probe::prove(&zygotes, &plain).await?;
        if let Ok(mut slot) = zygotes.slots[index(Flavour::Plain)].lock() {
            slot.current = Some(plain);
        }
        for flavour in [Flavour::Data, Flavour::Chart] {
            if flavour.is_warm(warm) {
                zygotes.replace(flavour);
            }
        }
        let watched = Arc::downgrade(&zygotes);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(CHECK_EVERY).await;
                let Some(zygotes) = watched.upgrade() else { return };
                zygotes.replace_spent();
            }
        });
        Ok(Launchers {
            nsjail,
            zygotes: Some(zygotes),
        })
    }

    pub fn strategy(&self, pool: bool) -> Strategy {
        match (&self.zygotes, pool) {
            (Some(_), _) => Strategy::Zygote,
            (None, true) => Strategy::Pool,
            (None, false) => Strategy::Cold,
        }
    }

    /// Stops every zygote (their children die with them).
    pub fn stop(&self) {
        if let Some(zygotes) = &self.zygotes {
            zygotes.stopped.store(true, Ordering::SeqCst);
            for slot in &zygotes.slots {
                let gone = slot.lock().ok().and_then(|mut s| s.current.take());
                drop(gone);
            }
        }
    }
}

impl Launcher for Launchers {
    type Jail = NsjailJail;

    async fn start(&self, spec: JailSpec) -> Result<NsjailJail, JailError> {
        if let Some(zygotes) = &self.zygotes {
            if !spec.warm && spec.memory_bytes >= zygotes.limits.memory_bytes {
                if let Some(jail) = zygotes.start(&spec).await {
                    return Ok(jail);
                }
            }
        }
        self.nsjail.start(spec).await
    }

    fn facts(&self) -> IsolationFacts {
        self.nsjail.facts()
    }

    fn zygotes_ready(&self) -> Option<Vec<(Flavour, bool)>> {
        let zygotes = self.zygotes.as_ref()?;
        Some(
            Flavour::ALL
                .iter()
                .map(|&f| {
                    let ready = zygotes.slots[index(f)]
                        .lock()
                        .map(|s| {
                            s.current
                                .as_ref()
                                .is_some_and(|z| z.spent(MAX_FORKS, MAX_AGE).is_none())
                        })
                        .unwrap_or(false);
                    (f, ready)
                })
                .collect(),
        )
    }

    fn zygotes_starting(&self) -> Option<Vec<(Flavour, bool)>> {
        let zygotes = self.zygotes.as_ref()?;
        Some(
            Flavour::ALL
                .iter()
                .map(|&f| (f, zygotes.slots[index(f)].lock().is_ok_and(|s| s.starting)))
                .collect(),
        )
    }
}

impl Zygotes {
    fn spec(&self, flavour: Flavour) -> JailSpec {
        JailSpec {
            flavour,
            memory_bytes: self.limits.memory_bytes,
            warm: false,
            lifetime: deadline::START + MAX_AGE + self.limits.timeout,
            start_within: deadline::START,
        }
    }

    async fn spawn(&self, flavour: Flavour) -> Result<Zygote, String> {
        let spec = self.spec(flavour);
        let cgroup = self
            .cgroups
            .create(&CgroupLimits {
                memory_bytes: self.limits.memory_bytes,
                max_processes: self.limits.max_processes,
                cpus: self.limits.jail_cpus,
                warm: false,
            })
            .map_err(|e| format!("cannot create the zygote's cgroup: {e}"))?;
        let id = self.nsjail.take_id().ok_or("every jail uid is in use")?;
        let command = ZygoteCommand::new(&self.nsjail, &spec, id)?;
        Zygote::start(&self.nsjail, command, Some(cgroup), spec.start_within).await
    }

    /// A usable zygote of this flavour; if the current one is not, it is let go (its running
    /// executions keep it alive until they end) and a new one is started in the background.
    fn current(self: &Arc<Self>, flavour: Flavour) -> Option<Arc<Zygote>> {
        let retired = {
            let mut slot = self.slots[index(flavour)].lock().ok()?;
            match &slot.current {
                Some(z) => match z.spent(MAX_FORKS, MAX_AGE) {
                    None => return Some(z.clone()),
                    Some(why) => slot.current.take().map(|z| (z, why)),
                },
                None => None,
            }
        };
        if let Some((zygote, why)) = retired {
            crate::logging::warning(
                "a zygote is replaced; until the new one is ready, plain executions get cold jails and the others wait for it",
                crate::fields! {"flavour" => flavour.as_str(), "reason" => why},
            );
            drop(zygote);
        }
        self.replace(flavour);
        None
    }

    /// Replaces each current zygote that can serve no more (after `stop` there is none).
    fn replace_spent(self: &Arc<Self>) {
        for flavour in [Flavour::Plain, Flavour::Data, Flavour::Chart] {
            let spent = self.slots[index(flavour)].lock().is_ok_and(|slot| {
                slot.current
                    .as_ref()
                    .is_some_and(|z| z.spent(MAX_FORKS, MAX_AGE).is_some())
            });
            if spent {
                self.current(flavour);
            }
        }
    }

    /// This flavour's zygote; for data and chart, the one starting if there is none yet (for
    /// at most the jail's start deadline; the zygote's own start has that deadline too),
    /// unless the last start failed.
    async fn ready(self: &Arc<Self>, spec: &JailSpec) -> Option<Arc<Zygote>> {
        // Listening before looking: a start that ends in between still wakes this one.
        let started = self.started[index(spec.flavour)].notified();
        tokio::pin!(started);
        started.as_mut().enable();
        if let Some(zygote) = self.current(spec.flavour) {
            return Some(zygote);
        }
        let worth_waiting = spec.flavour != Flavour::Plain
            && self.slots[index(spec.flavour)]
                .lock()
                .is_ok_and(|slot| slot.starting && !slot.failing);
        if !worth_waiting {
            return None;
        }
        tokio::time::timeout(spec.start_within, started).await.ok()?;
        self.current(spec.flavour)
    }

    /// Starts a new zygote for `flavour` in the background, unless one is starting already.
    fn replace(self: &Arc<Self>, flavour: Flavour) {
        if self.stopped.load(Ordering::SeqCst) {
            return;
        }
        {
            let Ok(mut slot) = self.slots[index(flavour)].lock() else {
                return;
            };
            if slot.starting {
                return;
            }
            slot.starting = true;
        }
        let zygotes = self.clone();
        tokio::spawn(async move {
            loop {
                let started = zygotes.spawn(flavour).await;
                if zygotes.stopped.load(Ordering::SeqCst) {
                    // The zygote, if it started, is let go; whoever waits for it goes cold.
                    if let Ok(mut slot) = zygotes.slots[index(flavour)].lock() {
                        slot.failing = true;
                    }
                    zygotes.started[index(flavour)].notify_waiters();
                    return;
                }
                match started {
                    Ok(zygote) => {
                        if let Ok(mut slot) = zygotes.slots[index(flavour)].lock() {
                            slot.current = Some(Arc::new(zygote));
                            slot.starting = false;
                            slot.failing = false;
                        }
                        zygotes.started[index(flavour)].notify_waiters();
                        return;
                    }
                    Err(why) => {
                        crate::logging::error(
                            "cannot start a zygote",
                            crate::fields! {"flavour" => flavour.as_str(), "reason" => why},
                        );
                        // Whoever waits goes cold rather than through the pause and the
                        // next try, and so does whoever comes before a start succeeds.
                        if let Ok(mut slot) = zygotes.slots[index(flavour)].lock() {
                            slot.failing = true;
                        }
                        zygotes.started[index(flavour)].notify_waiters();
                        tokio::time::sleep(RESTART_PAUSE).await;
                    }
                }
            }
        });
    }

    /// A jail forked from this flavour's zygote, ready for its script; None (logged) if there
    /// is no usable zygote or the fork failed: the caller starts a cold jail.
    async fn start(self: &Arc<Self>, spec: &JailSpec) -> Option<NsjailJail> {
        let zygote = self.ready(spec).await?;
        match self.fork(&zygote, spec).await {
            Ok(jail) => Some(jail),
            Err(why) => {
                zygote.set_broken();
                self.current(spec.flavour);
                crate::logging::warning(
                    "a zygote failed to fork a jail; this execution gets a cold jail",
                    crate::fields! {"flavour" => spec.flavour.as_str(), "reason" => why},
                );
                None
            }
        }
    }

    async fn fork(&self, zygote: &Arc<Zygote>, spec: &JailSpec) -> Result<NsjailJail, String> {
        let id = self.nsjail.take_id().ok_or("every jail uid is in use")?;
        let cgroup = self
            .cgroups
            .create(&CgroupLimits {
                memory_bytes: spec.memory_bytes,
                max_processes: self.limits.max_processes,
                cpus: self.limits.jail_cpus,
                warm: false,
            })
            .map_err(|e| format!("cannot create the jail's cgroup: {e}"))?;
        let limits = ForkLimits {
            id: id.get(),
            address_space_bytes: self.nsjail.address_space_mb(spec.memory_bytes) << 20,
            cpu_seconds: spec.cpu_backstop().as_secs(),
            processes: None,
        };
        // Dropped here on any error, or with this future if its request goes away: either
        // way the cgroup is removed.
        let forked = zygote.fork(&limits, &cgroup).await?;
        let ctl = forked.ctl;
        let mut jail = NsjailJail::forked(
            forked.stdin,
            forked.stdout,
            forked.stderr,
            forked.result,
            cgroup,
            id,
            zygote.clone(),
            self.limits.max_output_bytes,
        )
        .map_err(|e| e.message)?;
        match jail.wait_ready(spec.start_within).await {
            Ok(()) => Ok(jail),
            Err(e) => Err(match fork::failure(&ctl).await {
                Some(why) => format!("{}: {why}", e.message),
                None => e.message,
            }),
        }
    }
}

/// The start-up proof of zygote mode: two children forked from the plain zygote each run a
/// script that reports what it is; both must be jails of their own.
mod probe {
    use super::fork::{namespace_links, Zygote, NAMESPACES};
    use super::Zygotes;
    use crate::jail::protocol::{Report, RunRequest};
    use crate::jail::{Ending, Jail, JailSpec, JAIL_UID};
    use serde_json::Value;
    use std::sync::Arc;
    use std::time::Duration;

    const SCRIPT: &str = r#"import os

def main():
    status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines())
    return {
        "uid": os.getuid(), "gid": os.getgid(),
        "filters": int(status["Seccomp_filters"]), "no_new_privs": int(status["NoNewPrivs"]),
        "capabilities": status["CapEff"].strip(), "bounding": status["CapBnd"].strip(),
        "ambient": status["CapAmb"].strip(), "permitted": status["CapPrm"].strip(),
        "uid_map": open("/proc/self/uid_map").read().split(), "gid_map": open("/proc/self/gid_map").read().split(),
        "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        "fds": sorted(int(f) for f in os.listdir("/proc/self/fd")),
        "namespaces": {n: os.readlink("/proc/self/ns/" + n) for n in ("pid", "net", "mnt", "ipc", "uts", "user", "cgroup")},
    }
"#;

    pub(super) async fn prove(zygotes: &Arc<Zygotes>, zygote: &Arc<Zygote>) -> Result<(), String> {
        let ours = namespace_links("self").ok_or("cannot read the service's namespaces")?;
        let theirs = zygote.namespaces();
        // Namespace ids are reused once freed: a child is compared with what is alive while it
        // runs (the service's and the zygote's), not with an earlier child.
        let mut host_ids = Vec::new();
        for _ in 0..2 {
            let spec = JailSpec::probe(zygotes.limits.memory_bytes);
            let jail = zygotes.fork(zygote, &spec).await?;
            let request = RunRequest::new(SCRIPT, 64 * 1024);
            let execution = jail
                .run(request, Duration::from_secs(15), crate::jail::never_stopped())
                .await;
            let Ending::Reported(Report::Value { value: raw, .. }) = execution.ending else {
                return Err(format!(
                    "the probe script failed: {:?}; stderr: {}",
                    execution.ending,
                    execution.stderr.text()
                ));
            };
            let v: Value = serde_json::from_str(raw.get()).map_err(|e| e.to_string())?;
            // `65534 <id> 1`: the id is the host's (the zygote maps the service's ids to themselves).
            let host_id = match v["uid_map"].as_array().map(Vec::as_slice) {
                Some([inside, outside, count]) if *inside == JAIL_UID.to_string() && count == "1" => {
                    outside.as_str().and_then(|id| id.parse::<u32>().ok())
                }
                _ => None,
            };
            let checks = [
                ("uid", v["uid"] == JAIL_UID && v["gid"] == JAIL_UID),
                (
                    "seccomp filter stacked on nsjail's",
                    v["filters"].as_u64().is_some_and(|n| n >= 2),
                ),
                ("no_new_privs", v["no_new_privs"] == 1),
                (
                    "no capability",
                    ["capabilities", "bounding", "ambient", "permitted"]
                        .iter()
                        .all(|set| v[*set] == "0000000000000000"),
                ),
                (
                    "a host uid and gid of its own",
                    host_id.is_some_and(|id| id != zygote.id() && !host_ids.contains(&id))
                        && v["uid_map"] == v["gid_map"],
                ),
                ("a PID namespace of its own", v["pids"] == serde_json::json!([1, 2])),
                ("no fd but its own", v["fds"].as_array().is_some_and(|f| f.len() <= 6)),
            ];
            for (what, ok) in checks {
                if !ok {
                    return Err(format!("a zygote's child failed the probe ({what}): {v}"));
                }
            }
            for name in NAMESPACES {
                let link = &v["namespaces"][name];
                if link.as_str().is_none() || ours.iter().chain(theirs).any(|other| link == other.as_str()) {
                    return Err(format!("a zygote's child shares its {name} namespace: {v}"));
                }
            }
            host_ids.extend(host_id);
        }
        Ok(())
    }
}
