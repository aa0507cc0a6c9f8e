//! cgroup v2 (Docker's default, Cloud Run gen2): one hierarchy, one directory per jail.

use super::*;

/// Sets up cgroup v2 for jails: moves this service into a leaf of its own cgroup (the
/// no-internal-processes rule), then enables the controllers for a jails' parent.
pub(super) fn setup() -> Result<Cgroups, String> {
    let mount = mounts()
        .map_err(|e| format!("cannot read mountinfo: {e}"))?
        .into_iter()
        .find(|m| m.fstype == "cgroup2")
        .ok_or("no cgroup2 filesystem is mounted")?;
    let own = own_path(None).map_err(|e| format!("cannot find this process's cgroup v2: {e}"))?;
    let base = mount.locate(&own)?;
    setup_at(&base)
}

/// The v2 set-up below `base`, this process's cgroup.
pub(super) fn setup_at(base: &Path) -> Result<Cgroups, String> {
    let available =
        fs::read_to_string(base.join("cgroup.controllers")).map_err(|e| format!("{}: {e}", base.display()))?;
    let available: Vec<&str> = available.split_whitespace().collect();
    for needed in ["memory", "pids"] {
        if !available.contains(&needed) {
            return Err(format!("cgroup v2 at {} lacks the {needed} controller", base.display()));
        }
    }
    let has_cpu = available.contains(&"cpu");
    let wanted: &[&str] = if has_cpu {
        &["memory", "pids", "cpu"]
    } else {
        &["memory", "pids"]
    };
    let enable = wanted.iter().map(|c| format!("+{c}")).collect::<Vec<_>>().join(" ");
    let subtree = fs::read_to_string(base.join("cgroup.subtree_control")).unwrap_or_default();
    let missing: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|c| !subtree.split_whitespace().any(|e| e == *c))
        .collect();
    if !missing.is_empty() {
        // Controllers can only be enabled for children of a cgroup with no processes of its
        // own, except at the root (which has no cgroup.type).
        if base.join("cgroup.type").exists() {
            move_into_leaf(base)?;
        }
        write(&base.join("cgroup.subtree_control"), &enable).map_err(|e| format!("cannot enable controllers: {e}"))?;
    }
    remove_stale_parents(base);
    let parent = base.join(parent_name());
    create_dir(&parent)?;
    write(&parent.join("cgroup.subtree_control"), &enable).map_err(|e| format!("cannot enable controllers: {e}"))?;
    Ok(Cgroups {
        version: Version::V2,
        parents: vec![parent],
        has_cpu,
        next: AtomicU64::new(0),
    })
}

/// Writes a jail's limits into its v2 directory.
pub(super) fn apply(dir: &Path, limits: &CgroupLimits, has_cpu: bool) -> io::Result<()> {
    let quota = ((limits.cpus * PERIOD_US as f64) as u64).max(1000);
    write(&dir.join("memory.max"), &limits.memory_bytes.to_string())?;
    // No swap: the memory limit is the memory limit. Absent without swap support.
    let _ = write(&dir.join("memory.swap.max"), "0");
    // An out-of-memory kill takes the whole jail, not one process of it.
    let _ = write(&dir.join("memory.oom.group"), "1");
    write(&dir.join("pids.max"), &limits.max_processes.to_string())?;
    if has_cpu {
        write(&dir.join("cpu.max"), &format!("{quota} {PERIOD_US}"))?;
        let weight = if limits.warm { WEIGHT_V2.1 } else { WEIGHT_V2.0 };
        write(&dir.join("cpu.weight"), weight)?;
    }
    Ok(())
}

/// Moves this process (and an init process such as tini that started it) into `base/service`.
/// Anything else in `base` means the cgroup is shared, and v2 is not used.
fn move_into_leaf(base: &Path) -> Result<(), String> {
    let leaf = base.join("service");
    create_dir(&leaf)?;
    let me = std::process::id();
    let parent = std::os::unix::process::parent_id();
    let procs = fs::read_to_string(base.join("cgroup.procs")).map_err(|e| e.to_string())?;
    for pid in procs.split_whitespace().filter_map(|p| p.parse::<u32>().ok()) {
        if pid == me || (pid == parent && parent == 1) {
            write(&leaf.join("cgroup.procs"), &pid.to_string())
                .map_err(|e| format!("cannot move process {pid}: {e}"))?;
        }
    }
    let left = fs::read_to_string(base.join("cgroup.procs")).unwrap_or_default();
    if !left.trim().is_empty() {
        return Err(format!(
            "{} has other processes; cgroup v2 needs one of its own",
            base.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for a cgroup v2 directory: the files the kernel would show, as plain files.
    fn fake_v2_cgroup(dir: &Path, subtree: &str) {
        fs::write(
            dir.join("cgroup.controllers"),
            "cpuset cpu io memory hugetlb pids rdma misc\n",
        )
        .unwrap();
        fs::write(dir.join("cgroup.subtree_control"), subtree).unwrap();
        fs::write(dir.join("cgroup.procs"), "").unwrap();
    }

    /// cgroup v2 cannot run on the development machines (their controllers are on v1): this
    /// checks, on a stand-in directory, the files the v2 set-up and a jail's cgroup write.
    #[test]
    fn v2_setup_and_jail_limits_write_the_kernel_files() {
        let root = tempfile::tempdir().unwrap();
        // The root of a hierarchy (no cgroup.type): controllers are enabled without moving.
        fake_v2_cgroup(root.path(), "");
        let parent_dir = root.path().join(parent_name());
        fs::create_dir(&parent_dir).unwrap();
        fake_v2_cgroup(&parent_dir, "");
        let cgroups = setup_at(root.path()).unwrap();
        assert_eq!(cgroups.version(), Version::V2);
        assert!(cgroups.has_cpu());
        assert_eq!(
            fs::read_to_string(root.path().join("cgroup.subtree_control")).unwrap(),
            "+memory +pids +cpu"
        );
        assert_eq!(
            fs::read_to_string(parent_dir.join("cgroup.subtree_control")).unwrap(),
            "+memory +pids +cpu"
        );

        let limits = CgroupLimits {
            memory_bytes: 256 << 20,
            max_processes: 32,
            cpus: 0.5,
            warm: true,
        };
        let jail = cgroups.create(&limits).unwrap();
        let dir = &jail.dirs[0];
        let read = |name: &str| fs::read_to_string(dir.join(name)).unwrap();
        assert_eq!(read("memory.max"), (256u64 << 20).to_string());
        assert_eq!(read("memory.swap.max"), "0");
        assert_eq!(read("memory.oom.group"), "1");
        assert_eq!(read("pids.max"), "32");
        assert_eq!(read("cpu.max"), "50000 100000");
        assert_eq!(read("cpu.weight"), "1");
        jail.to_foreground();
        assert_eq!(read("cpu.weight"), "100");
        assert_eq!(
            jail.join_files()[0].to_str().unwrap(),
            dir.join("cgroup.procs").to_str().unwrap()
        );

        assert!(!jail.oom_killed());
        fs::write(dir.join("memory.events"), "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n").unwrap();
        assert!(jail.oom_killed());
    }

    #[test]
    fn v2_setup_refuses_a_cgroup_without_the_memory_controller() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("cgroup.controllers"), "cpu io pids\n").unwrap();
        let err = setup_at(dir.path()).unwrap_err();
        assert!(err.contains("memory"), "{err}");
    }

    #[test]
    fn v2_setup_keeps_controllers_already_enabled() {
        // Not the root (it has cgroup.type), but already set up by an earlier start: no move.
        let base = tempfile::tempdir().unwrap();
        fake_v2_cgroup(base.path(), "memory pids cpu");
        fs::write(base.path().join("cgroup.type"), "domain\n").unwrap();
        let parent_dir = base.path().join(parent_name());
        fs::create_dir(&parent_dir).unwrap();
        fake_v2_cgroup(&parent_dir, "");
        setup_at(base.path()).unwrap();
        assert!(!base.path().join("service").exists());
        assert_eq!(
            fs::read_to_string(base.path().join("cgroup.subtree_control")).unwrap(),
            "memory pids cpu"
        );
    }
}
