//! Cgroups for jails, owned by the service: one per execution, created before the jail starts,
//! read after it ends (so an out-of-memory kill can be told from a script that killed itself),
//! emptied and removed by the service. The jail never sees cgroupfs, so nothing under these
//! paths can have been written by a script.
//!
//! Both hierarchies are supported: cgroup v2 (Docker's default, Cloud Run gen2) and v1 with the
//! memory, pids and cpu controllers mounted separately (these development machines).

mod counters;
mod v1;
mod v2;

pub use counters::Counters;

use std::ffi::CString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
        }
    }
}

/// Limits applied to one jail's cgroup.
#[derive(Debug, Clone, Copy)]
pub struct CgroupLimits {
    pub memory_bytes: u64,
    pub max_processes: u64,
    /// CPU bandwidth in CPUs (1.0 = one full core).
    pub cpus: f64,
    /// A warm jail, prepared ahead of demand (the pool's): it gets CPU only when requests
    /// leave some over, until `JailCgroup::to_foreground`.
    pub warm: bool,
}

/// CPU weights: the kernel's default for a jail serving a request, the minimum for one
/// being prepared in the background (v2 cpu.weight, v1 cpu.shares).
const WEIGHT_V2: (&str, &str) = ("100", "1");
const SHARES_V1: (&str, &str) = ("1024", "2");

/// The service's parent cgroups, under which every jail gets its own.
#[derive(Debug)]
pub struct Cgroups {
    version: Version,
    /// v1: one parent per controller (memory, pids, optionally cpu); v2: one parent.
    parents: Vec<PathBuf>,
    has_cpu: bool,
    next: AtomicU64,
}

/// One jail's cgroup (one directory per v1 controller).
#[derive(Debug)]
pub struct JailCgroup {
    version: Version,
    dirs: Vec<PathBuf>,
    /// `cgroup.procs` of each directory, ready for the child to join between fork and exec.
    join_files: Vec<CString>,
}

const PARENT_PREFIX: &str = "python-executor-";
const PERIOD_US: u64 = 100_000;

struct Mount {
    fstype: String,
    /// The path of the hierarchy that is mounted here (not `/` in a container on a v1 host).
    root: String,
    point: PathBuf,
    super_options: String,
}

impl Mount {
    /// Where a cgroup path (as /proc/self/cgroup gives it) is under this mount.
    fn locate(&self, cgroup_path: &str) -> Result<PathBuf, String> {
        let root = self.root.trim_end_matches('/');
        let relative = cgroup_path
            .strip_prefix(root)
            .filter(|rest| rest.is_empty() || rest.starts_with('/'))
            .ok_or_else(|| format!("cgroup {cgroup_path} is outside the mounted {}", self.root))?;
        Ok(join(&self.point, relative))
    }
}

fn mounts() -> io::Result<Vec<Mount>> {
    let text = fs::read_to_string("/proc/self/mountinfo")?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mut left = left.split(' ');
            let root = unescape_mount_path(left.nth(3)?);
            let point = left.next()?;
            let mut right = right.split(' ');
            let fstype = right.next()?.to_string();
            let _source = right.next();
            let super_options = right.next().unwrap_or("").to_string();
            Some(Mount {
                fstype,
                root,
                point: PathBuf::from(unescape_mount_path(point)),
                super_options,
            })
        })
        .collect())
}

fn unescape_mount_path(path: &str) -> String {
    path.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// This process's cgroup path in a hierarchy: the v2 one (`0::`) or the v1 one with `controller`.
fn own_path(controller: Option<&str>) -> io::Result<String> {
    let text = fs::read_to_string("/proc/self/cgroup")?;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (id, controllers, path) = (parts.next(), parts.next(), parts.next());
        match (controller, id, controllers, path) {
            (None, Some("0"), Some(""), Some(path)) => return Ok(path.to_string()),
            (Some(want), _, Some(list), Some(path)) if list.split(',').any(|c| c == want) => {
                return Ok(path.to_string())
            }
            _ => {}
        }
    }
    Err(io::Error::new(io::ErrorKind::NotFound, "not in such a cgroup"))
}

fn join(base: &Path, cgroup_path: &str) -> PathBuf {
    base.join(cgroup_path.trim_start_matches('/'))
}

fn write(path: &Path, value: &str) -> io::Result<()> {
    fs::write(path, value).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

impl Cgroups {
    /// Sets up cgroup v2 for jails (see `v2`).
    pub fn setup_v2() -> Result<Cgroups, String> {
        v2::setup()
    }

    /// Sets up cgroup v1 for jails (see `v1`).
    pub fn setup_v1() -> Result<Cgroups, String> {
        v1::setup()
    }

    pub fn version(&self) -> Version {
        self.version
    }

    pub fn has_cpu(&self) -> bool {
        self.has_cpu
    }

    /// Creates the cgroup of one jail with its limits.
    /// A creation that fails halfway removes the directories it made.
    pub fn create(&self, limits: &CgroupLimits) -> io::Result<JailCgroup> {
        let name = format!("jail-{}", self.next.fetch_add(1, Ordering::Relaxed));
        let mut cgroup = JailCgroup {
            version: self.version,
            dirs: Vec::new(),
            join_files: Vec::new(),
        };
        match self.fill(&mut cgroup, &name, limits) {
            Ok(()) => Ok(cgroup),
            Err(e) => {
                // No process has joined yet: the directories are empty and go at once.
                for dir in std::mem::take(&mut cgroup.dirs).iter().rev() {
                    let _ = fs::remove_dir(dir);
                }
                Err(e)
            }
        }
    }

    fn fill(&self, cgroup: &mut JailCgroup, name: &str, limits: &CgroupLimits) -> io::Result<()> {
        for parent in &self.parents {
            let dir = parent.join(name);
            fs::create_dir(&dir)?;
            cgroup.dirs.push(dir.clone());
            let procs = CString::new(dir.join("cgroup.procs").into_os_string().into_encoded_bytes())
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in cgroup path"))?;
            cgroup.join_files.push(procs);
        }
        cgroup.apply(limits, self.has_cpu)
    }

    /// Removes the service's parent cgroups at shutdown, with any jail cgroup still in them
    /// (its processes killed first). Blocks briefly while killed processes exit.
    pub fn remove(&self) {
        for parent in &self.parents {
            remove_parent(parent);
        }
    }
}

/// The lowest memory limit on this process's cgroup and its ancestors (v2 or v1), if any.
pub fn own_memory_limit() -> Option<u64> {
    let mounts = mounts().ok()?;
    let (mount, own, file) = if let Some(m) = mounts.iter().find(|m| m.fstype == "cgroup2" && own_path(None).is_ok()) {
        (m, own_path(None).ok()?, "memory.max")
    } else {
        let m = mounts
            .iter()
            .find(|m| m.fstype == "cgroup" && m.super_options.split(',').any(|o| o == "memory"))?;
        (m, own_path(Some("memory")).ok()?, "memory.limit_in_bytes")
    };
    let mut dir = mount.locate(&own).ok()?;
    let mut lowest: Option<u64> = None;
    loop {
        if let Some(limit) = fs::read_to_string(dir.join(file))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
        {
            lowest = Some(lowest.map_or(limit, |l| l.min(limit)));
        }
        if dir == mount.point || !dir.pop() {
            return lowest;
        }
    }
}

fn create_dir(path: &Path) -> Result<(), String> {
    match fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("cannot create cgroup {}: {e}", path.display())),
    }
}

/// The PID namespace we live in, so that parents of services in other namespaces (other
/// containers sharing the hierarchy) are never taken for stale ones.
fn pid_namespace() -> String {
    fs::read_link("/proc/self/ns/pid")
        .ok()
        .and_then(|l| l.to_str().map(|s| s.chars().filter(char::is_ascii_digit).collect()))
        .unwrap_or_else(|| "0".into())
}

/// `python-executor-<pid namespace>-<pid>`: unique per service process on the machine.
fn parent_name() -> String {
    format!("{PARENT_PREFIX}{}-{}", pid_namespace(), std::process::id())
}

/// Parents left by an earlier service process of this PID namespace that died without
/// cleaning up.
fn remove_stale_parents(base: &Path) {
    let Ok(entries) = fs::read_dir(base) else { return };
    let namespace = pid_namespace();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some((ns, pid)) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PARENT_PREFIX))
            .and_then(|n| n.split_once('-'))
        else {
            continue;
        };
        if ns == namespace && pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            remove_parent(&entry.path());
        }
    }
}

fn remove_parent(parent: &Path) {
    if let Ok(jails) = fs::read_dir(parent) {
        for jail in jails.flatten().filter(|j| j.path().is_dir()) {
            remove_jail_dir(&jail.path());
        }
    }
    let _ = fs::remove_dir(parent);
}

/// Kills what is left in a jail's cgroup directory and removes it, retrying while the killed
/// processes leave (they do so a moment after the signal).
fn remove_jail_dir(dir: &Path) {
    for attempt in 0..200 {
        kill_all_in(dir);
        match fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(_) if attempt < 199 => std::thread::sleep(std::time::Duration::from_millis(5)),
            Err(_) => return,
        }
    }
}

/// Kills what is in a cgroup until nothing is left, sleeping while killed processes exit:
/// blocking, for `remove` and shutdown only.
fn kill_all_in(dir: &Path) {
    for _ in 0..100 {
        if !signal_all_in(dir) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// One pass: cgroup.kill (v2, Linux 5.14+) kills atomically; otherwise SIGKILL to every
/// process listed (the pids limit bounds how many a fork loop can add meanwhile). Returns
/// whether processes may be left (v1: some were listed).
fn signal_all_in(dir: &Path) -> bool {
    if write(&dir.join("cgroup.kill"), "1").is_ok() {
        return false;
    }
    let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) else {
        return false;
    };
    let pids: Vec<i32> = procs.split_whitespace().filter_map(|p| p.parse().ok()).collect();
    for &pid in &pids {
        // SAFETY: kill(2) with a pid read from the kernel's list of this cgroup's members.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    !pids.is_empty()
}

impl JailCgroup {
    fn apply(&self, limits: &CgroupLimits, has_cpu: bool) -> io::Result<()> {
        match self.version {
            Version::V2 => v2::apply(&self.dirs[0], limits, has_cpu),
            Version::V1 => v1::apply(&self.dirs, limits),
        }
    }

    /// Gives a warm jail the normal CPU weight: it is about to serve a request.
    pub fn to_foreground(&self) {
        for dir in &self.dirs {
            let (file, value) = match self.version {
                Version::V2 => ("cpu.weight", WEIGHT_V2.0),
                Version::V1 => ("cpu.shares", SHARES_V1.0),
            };
            if dir.join(file).exists() {
                let _ = write(&dir.join(file), value);
            }
        }
    }

    /// The files the child writes "0" to, between fork and exec, to join this cgroup.
    pub fn join_files(&self) -> &[CString] {
        &self.join_files
    }

    /// Whether the kernel killed something in this jail for running out of memory.
    pub fn oom_killed(&self) -> bool {
        let (file, key) = match self.version {
            Version::V2 => (self.dirs[0].join("memory.events"), "oom_kill"),
            Version::V1 => match self.dirs.iter().find(|d| d.join("memory.oom_control").exists()) {
                Some(dir) => (dir.join("memory.oom_control"), "oom_kill"),
                None => return false,
            },
        };
        let Ok(text) = fs::read_to_string(file) else {
            return false;
        };
        text.lines().any(|line| {
            let mut parts = line.split_whitespace();
            parts.next() == Some(key) && parts.next().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0) > 0
        })
    }

    /// Signals every process in the jail once, without waiting for them to go: safe on an
    /// async worker. The runner (PID 1 of the jail) is among them, and its PID namespace dies
    /// with it; `remove`, off the async workers, kills stragglers until the cgroup is empty.
    pub fn kill_all(&self) {
        for dir in &self.dirs {
            signal_all_in(dir);
        }
    }
}

/// A jail's cgroup is removed when it is dropped, whoever drops it and whenever: a jail
/// destroyed, a start that failed, a request whose client went away halfway through. What is
/// left in it is killed first; off the async workers, as that may wait for processes to exit.
impl Drop for JailCgroup {
    fn drop(&mut self) {
        let dirs = std::mem::take(&mut self.dirs);
        let remove = move || {
            dirs.iter().for_each(|dir| remove_jail_dir(dir));
            collect_unix_garbage();
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(remove)),
            Err(_) => remove(),
        }
    }
}

/// Frees what the jail's processes left in flight on Unix sockets: descriptors sent over a
/// socket that is itself in flight (a cycle) outlive every process, with what they hold
/// (memfds, a /tmp tmpfs: up to the jail's memory limit, charged to the service once its
/// cgroup is gone). The kernel collects such cycles only when some Unix socket is released,
/// so the service releases one of its own once a jail's processes are all gone.
fn collect_unix_garbage() {
    drop(std::os::unix::net::UnixDatagram::pair());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(root: &str, point: &str) -> Mount {
        Mount {
            fstype: "cgroup2".into(),
            root: root.into(),
            point: point.into(),
            super_options: String::new(),
        }
    }

    #[test]
    fn cgroup_paths_are_found_under_the_mounted_root() {
        // A host mount of the whole hierarchy.
        assert_eq!(
            mount("/", "/sys/fs/cgroup").locate("/a/b").unwrap(),
            PathBuf::from("/sys/fs/cgroup/a/b")
        );
        // A container on a v1 host: its own cgroup is what is mounted.
        let container = mount("/docker/abc", "/sys/fs/cgroup/memory");
        assert_eq!(
            container.locate("/docker/abc").unwrap(),
            PathBuf::from("/sys/fs/cgroup/memory")
        );
        assert_eq!(
            container.locate("/docker/abc/x").unwrap(),
            PathBuf::from("/sys/fs/cgroup/memory/x")
        );
        assert!(container.locate("/docker/abcd").is_err());
        assert!(container.locate("/other").is_err());
    }

    #[test]
    fn parent_names_carry_the_pid_namespace_and_pid() {
        let name = parent_name();
        let rest = name.strip_prefix(PARENT_PREFIX).unwrap();
        let (ns, pid) = rest.split_once('-').unwrap();
        assert!(!ns.is_empty() && ns.chars().all(|c| c.is_ascii_digit()), "{name}");
        assert_eq!(pid, std::process::id().to_string());
    }
}
