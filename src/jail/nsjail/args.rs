//! nsjail's command line for one jail, and what its configuration file puts in force.

use super::{Nsjail, JAIL_VENV, LOG_FD, RESULT_FD};
use crate::jail::ids::JailId;
use crate::jail::zygote::fork::{self, ZygoteCommand};
use crate::jail::{protocol, JailSpec, JAIL_UID};
use std::path::Path;

/// Address space allowed above the memory limit when a cgroup enforces the latter.
const ADDRESS_SPACE_HEADROOM_MB: u64 = 512;
/// Real-time signals a jail may have queued at once (RLIMIT_SIGPENDING). With a user
/// namespace, what a jail queues is also charged to host root, who created the namespace:
/// the host's default (~96 000) would let one jail take root's and every other jail's.
const JAIL_SIGPENDING: u32 = 128;
/// Sets RLIMIT_SIGPENDING inside the jail, before the runner starts. nsjail has no option for
/// it, and it cannot be set on nsjail itself: the user namespace takes its creator's limit as
/// the ceiling for what it charges to root, a count every jail shares.
const PRLIMIT: &str = "/usr/bin/prlimit";

/// What nsjail.cfg puts in force, as far as `/health` states it.
#[derive(Debug, Clone)]
pub(super) struct ConfigFacts {
    /// The namespaces the configuration asks for (the user namespace is the probe's choice).
    pub(super) namespaces: Vec<&'static str>,
    pub(super) seccomp: bool,
}

impl ConfigFacts {
    /// Reads nsjail's text configuration: `clone_new*: true|false` and any seccomp policy.
    pub(super) fn read(config: &Path) -> Result<ConfigFacts, String> {
        let text = std::fs::read_to_string(config).map_err(|e| format!("NSJAIL_CONFIG: {e}"))?;
        let setting = |key: &str| {
            text.lines()
                .map(str::trim)
                .filter_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
                .last()
                .map(|v| v.trim() == "true")
        };
        // nsjail's defaults: every one of these namespaces is on unless the file turns it off.
        let namespaces = [
            ("mount", "clone_newns"),
            ("pid", "clone_newpid"),
            ("network", "clone_newnet"),
            ("ipc", "clone_newipc"),
            ("uts", "clone_newuts"),
            ("cgroup", "clone_newcgroup"),
        ]
        .into_iter()
        .filter(|(_, key)| setting(key).unwrap_or(true))
        .map(|(name, _)| name)
        .collect();
        let seccomp = text
            .lines()
            .map(str::trim)
            .any(|l| l.starts_with("seccomp_string:") || l.starts_with("seccomp_policy_file:"));
        Ok(ConfigFacts { namespaces, seccomp })
    }
}

impl Nsjail {
    /// nsjail's arguments for one jail (everything but the fds, which `spawn` sets up).
    /// `id` is the jail's own host uid and gid (see `jail::ids`).
    pub(super) fn arguments(&self, spec: &JailSpec, id: u32) -> Vec<String> {
        let mut args = self.options(spec, &self.config.display().to_string(), id);
        args.push("--".into());
        args.extend(self.interpreter(protocol::RUNNER_SOURCE));
        // The runner's own word for the same thing.
        args.push(if spec.warm { "warm" } else { "cold" }.into());
        args.extend(spec.flavour.modules().iter().map(|m| m.to_string()));
        args
    }

    /// How to start a zygote of `spec`'s flavour: the same options as a jail's, with the
    /// zygote role's config (derived from this one) and extra mount, running `zygote.py`.
    /// The zygote runs as a host id of its own, `id`, as a jail does. Each execution it forks
    /// runs as another id of the service's: those are mapped (to themselves) into the zygote's
    /// user namespace, and the zygote keeps CAP_SETUID and CAP_SETGID there, and only there, so
    /// that a child can become its id before it makes its own user namespace.
    pub(crate) fn zygote_command(&self, spec: &JailSpec, id: JailId) -> Result<ZygoteCommand, String> {
        let text = std::fs::read_to_string(&self.config).map_err(|e| format!("NSJAIL_CONFIG: {e}"))?;
        let mut args = self.options(spec, &ZygoteCommand::config_path(), id.get());
        if !self.isolation.user_namespace {
            return Err("a zygote needs a user namespace".into());
        }
        for (first, count) in self.other_ids(id.get()) {
            let mapping = format!("{first}:{first}:{count}");
            args.extend(["--user".into(), mapping.clone(), "--group".into(), mapping]);
        }
        for cap in fork::ZYGOTE_CAPABILITIES {
            args.extend(["--cap".into(), cap.into()]);
        }
        args.extend(["--mount".into(), fork::PROC_RW_MOUNT.into(), "--".into()]);
        args.extend(self.interpreter(fork::ZYGOTE_SOURCE));
        args.extend([fork::zygote_settings(&text), protocol::RUNNER_SOURCE.into()]);
        args.extend(spec.flavour.modules().iter().map(|m| m.to_string()));
        Ok(ZygoteCommand {
            nsjail: self.nsjail.clone(),
            args,
            config: fork::zygote_config(&text)?,
            id,
            venv: self.venv.clone(),
        })
    }

    /// RLIMIT_AS for a jail with this memory limit, in MiB.
    pub(crate) fn address_space_mb(&self, memory_bytes: u64) -> u64 {
        let memory_mb = (memory_bytes / (1024 * 1024)).max(1);
        // With a memory cgroup, that is the limit on memory actually used; the address-space
        // limit leaves room above it for what libraries reserve without using (numpy and
        // pandas reserve far more than they touch). Without one, RLIMIT_AS is the limit.
        if self.isolation.cgroups.is_some() {
            memory_mb + ADDRESS_SPACE_HEADROOM_MB
        } else {
            memory_mb
        }
    }

    /// Everything before the program: the config, fds, user mapping, mounts and limits.
    fn options(&self, spec: &JailSpec, config: &str, id: u32) -> Vec<String> {
        let mut args: Vec<String> = vec!["--config".into(), config.into()];
        args.extend([
            "--log_fd".into(),
            LOG_FD.to_string(),
            "--pass_fd".into(),
            RESULT_FD.to_string(),
        ]);
        // The jail's own host uid and gid: JAIL_UID inside a user namespace, itself without one.
        if self.isolation.user_namespace {
            let mapping = format!("{JAIL_UID}:{id}:1");
            args.extend(["--user".into(), mapping.clone(), "--group".into(), mapping]);
        } else {
            args.extend([
                "--disable_clone_newuser".into(),
                "--user".into(),
                id.to_string(),
                "--group".into(),
                id.to_string(),
            ]);
        }
        if self.venv.is_some() {
            args.extend(["--bindmount_ro".into(), format!("{}:{JAIL_VENV}", super::venv::STAGE)]);
        }
        let address_space_mb = self.address_space_mb(spec.memory_bytes);
        args.extend([
            "--time_limit".into(),
            spec.wall_backstop().as_secs().to_string(),
            "--rlimit_as".into(),
            address_space_mb.to_string(),
            "--rlimit_cpu".into(),
            spec.cpu_backstop().as_secs().to_string(),
        ]);
        if self.isolation.cgroups.is_none() {
            // Without a pids cgroup, RLIMIT_NPROC is the only bound on processes and threads.
            args.extend(["--rlimit_nproc".into(), self.limits.max_processes.to_string()]);
        }
        args
    }
}

impl Nsjail {
    /// The jail's program: the sandbox interpreter, isolated (`-I -B`), running `source`, behind
    /// `prlimit`, which lowers RLIMIT_SIGPENDING (nsjail has no option for it) for every
    /// process of the jail.
    fn interpreter(&self, source: &str) -> [String; 8] {
        [
            PRLIMIT.into(),
            format!("--sigpending={JAIL_SIGPENDING}"),
            "--".into(),
            self.jail_python.clone(),
            "-I".into(),
            "-B".into(),
            "-c".into(),
            source.into(),
        ]
    }
}
