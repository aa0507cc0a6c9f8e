//! Helpers for the adversarial suite (tests/hostile_*.rs), included by each of those files
//! with `#[path = "common/hostile.rs"] mod hostile;` next to `mod common;`.
//!
//! - [`HostSnapshot`]: what the host looked like before an attack, and the proof that it looks
//!   the same afterwards: no leftover jail processes or cgroups of this server, no new mounts,
//!   no new files in /tmp that a jail could have made.
//! - [`during`]: runs an attack while a bystander thread keeps asking the same server for
//!   ordinary answers, and checks every one of them.
//!
//! Tests run two at a time, each with a server of its own settings or, one test at a time, the
//! binary's [`shared_server`]: every check here is scoped to one server's pid (its process tree
//! and its `python-executor-<pid>` cgroups), so a neighbour's jails never count as leftovers.
#![allow(dead_code)]

pub use crate::common::Client;
use crate::common::{processes, Proc, Response, Server};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long the host may take to tidy up after an answer (jails are torn down after it).
pub const SETTLE: Duration = Duration::from_secs(5);

/// A process seen in /proc.
/// The descendants of `root` with their depth (1 = child).
pub fn descendants(all: &[Proc], root: u32) -> Vec<(Proc, usize)> {
    let mut children: HashMap<u32, Vec<&Proc>> = HashMap::new();
    for p in all {
        children.entry(p.ppid).or_default().push(p);
    }
    let mut found = Vec::new();
    let mut stack = vec![(root, 0usize)];
    while let Some((pid, depth)) = stack.pop() {
        for child in children.get(&pid).into_iter().flatten() {
            found.push(((*child).clone(), depth + 1));
            stack.push((child.pid, depth + 1));
        }
    }
    found
}

/// The host's mounts as "point type source" (ids and options of existing mounts do not
/// matter). Container tooling that may run beside the tests (buildah, podman: overlay, fuse,
/// nsfs, their storage directories) is left out: a jail's leak would be a proc, tmpfs, cgroup
/// or bind mount.
fn mounts() -> BTreeSet<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let point = left.split(' ').nth(4)?;
            let mut right = right.split(' ');
            let (fstype, source) = (right.next()?, right.next()?);
            let tooling = fstype.starts_with("overlay")
                || fstype.starts_with("fuse")
                || fstype == "nsfs"
                || point.contains("/containers/");
            (!tooling).then(|| format!("{point} {fstype} {source}"))
        })
        .collect()
}

/// Top-level entries of the host's /tmp that a jail (or a test marker) could account for:
/// owned by the jail uid, or named like the suite's markers or the sandbox's tools. Other
/// new files (cargo, other test processes running at the same time) are not ours to judge.
fn suspicious_tmp() -> BTreeSet<OsString> {
    let mut found = BTreeSet::new();
    for entry in std::fs::read_dir("/tmp").into_iter().flatten().flatten() {
        let name = entry.file_name();
        let lossy = name.to_string_lossy().to_ascii_lowercase();
        let owned_by_jail = entry
            .metadata()
            .map(|m| crate::common::TEST_JAIL_UIDS.contains(&m.uid()))
            .unwrap_or(false);
        if owned_by_jail || lossy.contains("hostile") || lossy.contains("nsjail") || lossy.contains("python-executor") {
            found.insert(name);
        }
    }
    found
}

/// `GET /health` of the server on `port`: its JSON when it answers 200.
fn health_at(port: u16) -> Option<Value> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    if !raw.windows(4).any(|w| w == b"\r\n\r\n") {
        return None;
    }
    let r = Response::parse(&raw);
    (r.status == 200)
        .then(|| serde_json::from_slice(&r.body).ok())
        .flatten()
}

/// The idle jails /health accounts for, each one process directly under the server (its
/// nsjail): the pool's ready and starting jails, and each flavour's zygote, ready or starting.
/// `Err` says what /health lacks to tell.
fn accounted_jails(health: &Value) -> Result<u64, String> {
    let counts = |v: &Value| v.as_object().map(|m| m.values().filter_map(Value::as_u64).sum::<u64>());
    let flags = |v: &Value| v.as_object().map(|m| m.values().filter(|b| **b == true).count() as u64);
    let mut jails = 0;
    if !health["pool"].is_null() {
        let pool = &health["pool"];
        jails += counts(&pool["ready"]).ok_or(format!("no pool.ready in {health}"))?;
        jails += counts(&pool["starting"]).ok_or(format!("no pool.starting in {health}"))?;
    }
    if !health["zygotes"].is_null() {
        jails += flags(&health["zygotes"]).ok_or(format!("no zygotes in {health}"))?;
        jails += flags(&health["zygotes_starting"]).ok_or(format!("no zygotes_starting in {health}"))?;
    }
    Ok(jails)
}

/// What the host looked like before an attack, for one server.
pub struct HostSnapshot {
    pub server_pid: u32,
    port: u16,
    mounts: BTreeSet<String>,
    tmp: BTreeSet<OsString>,
    cgroup_parents: Vec<PathBuf>,
}

impl HostSnapshot {
    pub fn take(server: &Server) -> HostSnapshot {
        let server_pid = server.pid();
        let cgroup_parents = crate::common::service_cgroups(server_pid);
        // With cgroups in force, the checks below must have directories to look at.
        let health = server.get("/health").json();
        if !health["isolation"]["cgroup"].is_null() {
            assert!(!cgroup_parents.is_empty(), "cannot find the server's cgroups: {health}");
        }
        HostSnapshot {
            server_pid,
            port: server.port,
            mounts: mounts(),
            tmp: suspicious_tmp(),
            cgroup_parents,
        }
    }

    /// Everything that differs from "as before", described; empty when the host is clean.
    ///
    /// Expected at rest: the server itself and the idle jails /health accounts for (its warm
    /// pool's, ready or starting, and its zygotes): as many processes directly under the
    /// server (nsjail) as those, each with its runner (or zygote) at depth 2 without children,
    /// all inside the server's jail cgroups. One more process directly under the server is a
    /// jail that outlived its execution; anything deeper is a script's process that did; a
    /// jail cgroup without processes, or with processes that are not such idle jails, is a
    /// leak.
    pub fn differences(&self) -> Vec<String> {
        let mut problems = Vec::new();
        // /health before and after reading the processes: a pool that changed in between
        // cannot be compared with them (the caller looks again).
        let before = health_at(self.port);
        let all = processes();
        let after = health_at(self.port);
        let tree = descendants(&all, self.server_pid);
        let direct: Vec<String> = tree
            .iter()
            .filter(|(_, depth)| *depth == 1)
            .map(|(p, _)| format!("{} ({}, {})", p.pid, p.name, p.state))
            .collect();
        match (before, after) {
            (Some(before), Some(after))
                if before["pool"] == after["pool"]
                    && before["zygotes"] == after["zygotes"]
                    && before["zygotes_starting"] == after["zygotes_starting"] =>
            {
                match accounted_jails(&after) {
                    Ok(idle) if idle == direct.len() as u64 => {}
                    Ok(idle) => problems.push(format!(
                        "{} processes directly under the server, {idle} idle jails accounted for by /health: {}",
                        direct.len(),
                        direct.join(", ")
                    )),
                    Err(why) => problems.push(why),
                }
            }
            (Some(_), Some(_)) => problems.push("the pool or the zygotes changed while the processes were read".into()),
            _ => problems.push("the server does not answer /health".into()),
        }
        let idle_jail: BTreeSet<u32> = tree.iter().filter(|(_, d)| *d <= 2).map(|(p, _)| p.pid).collect();
        for (p, depth) in &tree {
            if *depth >= 3 {
                problems.push(format!(
                    "leftover process {} ({}) uid {} at depth {depth} under the server",
                    p.pid, p.name, p.uid
                ));
            }
        }
        // Escaped the process tree but still in one of this server's cgroups.
        let marker = format!("-{}/", self.server_pid);
        for p in &all {
            if p.cgroups.contains("/python-executor-") && p.cgroups.contains(&marker) && !idle_jail.contains(&p.pid) {
                problems.push(format!(
                    "process {} ({}) uid {} in the server's jail cgroups",
                    p.pid, p.name, p.uid
                ));
            }
        }
        for parent in &self.cgroup_parents {
            if let Ok(procs) = std::fs::read_to_string(parent.join("cgroup.procs")) {
                if !procs.trim().is_empty() {
                    problems.push(format!(
                        "processes in the jails' parent cgroup {}: {}",
                        parent.display(),
                        procs.trim()
                    ));
                }
            }
            for entry in std::fs::read_dir(parent).into_iter().flatten().flatten() {
                let name = entry.file_name().to_string_lossy().to_string();
                if !name.starts_with("jail-") || !entry.path().is_dir() {
                    continue;
                }
                let procs = std::fs::read_to_string(entry.path().join("cgroup.procs")).unwrap_or_default();
                let pids: Vec<u32> = procs.split_whitespace().filter_map(|p| p.parse().ok()).collect();
                if pids.is_empty() {
                    problems.push(format!("empty jail cgroup left behind: {}", entry.path().display()));
                } else if let Some(stray) = pids.iter().find(|p| !idle_jail.contains(p)) {
                    problems.push(format!(
                        "jail cgroup {} holds process {stray}, not an idle pooled jail",
                        entry.path().display()
                    ));
                }
            }
        }
        for mount in mounts().difference(&self.mounts) {
            problems.push(format!("new mount on the host: {mount}"));
        }
        for name in suspicious_tmp().difference(&self.tmp) {
            problems.push(format!("new file in the host's /tmp: {}", name.to_string_lossy()));
        }
        problems
    }

    /// Asserts the host is as before, allowing [`SETTLE`] for jails to be torn down.
    pub fn assert_restored(&self) {
        let deadline = Instant::now() + SETTLE;
        loop {
            let problems = self.differences();
            if problems.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "the host is not as it was before the attack:\n  {}",
                    problems.join("\n  ")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The test process's shared server (production defaults, see [`Server::shared`]), held by one
/// hostile test at a time: each test's snapshot starts from the state the test before it
/// proved restored, so attacks pile up on one service instead of each getting a fresh one.
pub fn shared_server() -> SharedServer {
    shared_server_with(&[])
}

/// [`shared_server`] with these settings (one server per process and settings; one hostile
/// test at a time across all of them).
pub fn shared_server_with(settings: &'static [(&'static str, &'static str)]) -> SharedServer {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    // A test that failed holding its turn leaves the server to the next one all the same.
    let turn = TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    SharedServer {
        _turn: turn,
        server: Server::shared_with(settings),
    }
}

pub struct SharedServer {
    _turn: std::sync::MutexGuard<'static, ()>,
    server: &'static Server,
}

impl std::ops::Deref for SharedServer {
    type Target = Server;
    fn deref(&self) -> &Server {
        self.server
    }
}

impl<'a> From<&'a SharedServer> for Client<'a> {
    fn from(shared: &'a SharedServer) -> Client<'a> {
        Client::new(shared.server)
    }
}

/// What every hostile test checks around its attack: the host as it was before (snapshot),
/// other clients served while it runs (bystander), and the service still serving after it.
pub fn contained<R>(server: &Server, attack: impl FnOnce() -> R) -> R {
    let snapshot = HostSnapshot::take(server);
    let outcome = during(server, attack);
    crate::common::assert_serving(server);
    snapshot.assert_restored();
    outcome
}

/// Runs `attack` while a bystander thread keeps sending ordinary scripts to the same server
/// and checks every answer (value and stdout). At least one bystander request is answered,
/// and the first starts together with the attack. Returns what the attack returned.
pub fn during<R>(server: &Server, attack: impl FnOnce() -> R) -> R {
    during_as(Client::new(server), attack)
}

pub fn during_as<R>(client: Client<'_>, attack: impl FnOnce() -> R) -> R {
    let stop = AtomicBool::new(false);
    let answered = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let bystander = scope.spawn(|| {
            let mut n: u64 = 0;
            while !stop.load(Ordering::Acquire) || answered.load(Ordering::Acquire) == 0 {
                n += 1;
                let script = format!("def main():\n    print('bystander {n}')\n    return [{n}, {n} * 3]\n");
                let r = client.execute(&script);
                assert_eq!(
                    r.status,
                    200,
                    "a bystander request failed during the attack: {}",
                    r.text()
                );
                assert_eq!(
                    r.json(),
                    json!({"result": [n, n * 3], "stdout": format!("bystander {n}\n")}),
                    "a bystander got a wrong answer during the attack"
                );
                answered.fetch_add(1, Ordering::AcqRel);
                // Keep asking, twice a second, without becoming a load test of our own (each
                // answer is an execution: a jail's worth of CPU taken from the attack's test).
                for _ in 0..10 {
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        });
        // Stops the bystander however the attack ends (a failed assertion panics, and a scope
        // waits for its threads before passing the panic on).
        struct StopOnDrop<'a>(&'a AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Release);
            }
        }
        let guard = StopOnDrop(&stop);
        let outcome = attack();
        drop(guard);
        if let Err(panic) = bystander.join() {
            std::panic::resume_unwind(panic);
        }
        assert!(answered.load(Ordering::Acquire) >= 1);
        outcome
    })
}

/// Asserts an error answer: the status, a JSON body with this `kind` and a non-empty one-line
/// `error` message. Returns the body.
pub fn assert_error(r: &Response, status: u16, kind: &str) -> Value {
    let body: Value = serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("expected a JSON {kind} error, got ({e}) {} {}", r.status, r.text()));
    assert_eq!(
        (r.status, body["kind"].as_str().unwrap_or("")),
        (status, kind),
        "{}",
        r.text()
    );
    let message = body["error"].as_str().unwrap_or("");
    assert!(
        !message.is_empty() && !message.contains('\n'),
        "error message: {}",
        r.text()
    );
    body
}

/// Asserts a clear JSON error of one of `kinds` (any status); returns the body.
pub fn assert_error_of(r: &Response, kinds: &[&str]) -> Value {
    let body: Value = serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("expected a JSON error, got ({e}) {} {}", r.status, r.text()));
    let kind = body["kind"].as_str().unwrap_or("");
    assert!(
        r.status >= 400 && kinds.contains(&kind),
        "expected one of {kinds:?}, got {} {}",
        r.status,
        r.text()
    );
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|m| !m.is_empty() && !m.contains('\n')),
        "{}",
        r.text()
    );
    body
}

/// A value unlikely to appear anywhere by chance (for secrets and markers).
pub fn nonce(label: &str) -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{label}-{:x}{:x}-{}",
        t.as_nanos(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);
