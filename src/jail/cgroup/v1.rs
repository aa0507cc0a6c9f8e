//! cgroup v1 with the memory, pids and cpu controllers mounted separately (these development
//! machines): one directory per controller and jail.

use super::*;

/// Sets up cgroup v1: a parent for jails under this process's cgroup in the memory, pids
/// and (if mounted) cpu and cpuacct hierarchies.
pub(super) fn setup() -> Result<Cgroups, String> {
    let mounts = mounts().map_err(|e| format!("cannot read mountinfo: {e}"))?;
    let find = |controller: &str| {
        mounts
            .iter()
            .find(|m| m.fstype == "cgroup" && m.super_options.split(',').any(|o| o == controller))
    };
    let mut parents = Vec::new();
    let mut used_points = Vec::new();
    let mut has_cpu = false;
    // cpuacct only counts (a jail's CPU time, for `usage`); it is often mounted with cpu.
    for controller in ["memory", "pids", "cpu", "cpuacct"] {
        let Some(point) = find(controller) else {
            if controller == "cpu" || controller == "cpuacct" {
                continue;
            }
            return Err(format!("no cgroup v1 {controller} hierarchy is mounted"));
        };
        if used_points.contains(&&point.point) {
            continue;
        }
        used_points.push(&point.point);
        let own = own_path(Some(controller)).unwrap_or_else(|_| "/".into());
        let base = point.locate(&own)?;
        remove_stale_parents(&base);
        let parent = base.join(parent_name());
        create_dir(&parent)?;
        if controller == "cpu" {
            has_cpu = true;
        }
        parents.push(parent);
    }
    Ok(Cgroups {
        version: Version::V1,
        parents,
        has_cpu,
        next: AtomicU64::new(0),
    })
}

/// Socket buffer memory a jail may hold on cgroup v1, where it is counted apart from its memory:
/// enough for any loopback use a script has, far from the host's TCP budget.
pub(super) fn socket_buffers_v1(memory_bytes: u64) -> u64 {
    memory_bytes.min(32 << 20)
}

/// Writes a jail's limits into its v1 directories (one per controller).
pub(super) fn apply(dirs: &[PathBuf], limits: &CgroupLimits) -> io::Result<()> {
    let quota = ((limits.cpus * PERIOD_US as f64) as u64).max(1000);
    for dir in dirs {
        if dir.join("memory.limit_in_bytes").exists() {
            write(&dir.join("memory.limit_in_bytes"), &limits.memory_bytes.to_string())?;
            let _ = write(
                &dir.join("memory.memsw.limit_in_bytes"),
                &limits.memory_bytes.to_string(),
            );
            // v1 counts no socket buffer against a jail's memory unless this is set (v2 counts
            // them in memory.max): without it, one jail's loopback sockets could hold gigabytes
            // and reach the host's TCP and UDP limits, failing every connection on the host.
            let sockets = dir.join("memory.kmem.tcp.limit_in_bytes");
            if sockets.exists() {
                write(&sockets, &socket_buffers_v1(limits.memory_bytes).to_string())?;
            }
        } else if dir.join("pids.max").exists() {
            write(&dir.join("pids.max"), &limits.max_processes.to_string())?;
        } else if dir.join("cpu.cfs_quota_us").exists() {
            write(&dir.join("cpu.cfs_period_us"), &PERIOD_US.to_string())?;
            write(&dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
            let shares = if limits.warm { SHARES_V1.1 } else { SHARES_V1.0 };
            write(&dir.join("cpu.shares"), shares)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_creation_that_fails_halfway_leaves_nothing_behind() {
        // v1: memory's directory is made, then pids' parent is missing.
        let root = tempfile::tempdir().unwrap();
        let memory = root.path().join("memory");
        fs::create_dir(&memory).unwrap();
        let cgroups = Cgroups {
            version: Version::V1,
            parents: vec![memory.clone(), root.path().join("pids-missing")],
            has_cpu: false,
            next: AtomicU64::new(0),
        };
        let limits = CgroupLimits {
            memory_bytes: 64 << 20,
            max_processes: 8,
            cpus: 1.0,
            warm: false,
        };
        assert!(cgroups.create(&limits).is_err());
        let left: Vec<_> = fs::read_dir(&memory).unwrap().flatten().map(|e| e.path()).collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }
}
