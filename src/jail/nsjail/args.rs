//! nsjail's command line for one jail, and what its configuration file puts in force.

use super::{Nsjail, LOG_FD, RESULT_FD};
use crate::jail::zygote::fork::{self, ZygoteCommand};
use crate::jail::{protocol, JailSpec, JAIL_UID};
use std::path::Path;

/// Address space allowed above the memory limit when a cgroup enforces the latter.
const ADDRESS_SPACE_HEADROOM_MB: u64 = 512;

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
    pub(super) fn arguments(&self, spec: &JailSpec) -> Vec<String> {
        let mut args = self.options(spec, &self.config.display().to_string());
        args.push("--".into());
        args.extend([
            self.jail_python.clone(),
            "-I".into(),
            "-B".into(),
            "-c".into(),
            protocol::RUNNER_SOURCE.into(),
        ]);
        // The runner's own word for the same thing.
        args.push(if spec.warm { "warm" } else { "cold" }.into());
        args.extend(spec.flavour.modules().iter().map(|m| m.to_string()));
        args
    }

    /// How to start a zygote of `spec`'s flavour: the same options as a jail's, with the
    /// zygote role's config (derived from this one) and extra mount, running `zygote.py`.
    pub(crate) fn zygote_command(&self, spec: &JailSpec) -> Result<ZygoteCommand, String> {
        let text = std::fs::read_to_string(&self.config).map_err(|e| format!("NSJAIL_CONFIG: {e}"))?;
        let mut args = self.options(spec, &ZygoteCommand::config_path());
        args.extend(["--mount".into(), fork::PROC_RW_MOUNT.into(), "--".into()]);
        args.extend([
            self.jail_python.clone(),
            "-I".into(),
            "-B".into(),
            "-c".into(),
            fork::ZYGOTE_SOURCE.into(),
            fork::zygote_settings(),
            protocol::RUNNER_SOURCE.into(),
        ]);
        args.extend(spec.flavour.modules().iter().map(|m| m.to_string()));
        Ok(ZygoteCommand {
            nsjail: self.nsjail.clone(),
            args,
            config: fork::zygote_config(&text)?,
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
    fn options(&self, spec: &JailSpec, config: &str) -> Vec<String> {
        let mut args: Vec<String> = vec!["--config".into(), config.into()];
        args.extend([
            "--log_fd".into(),
            LOG_FD.to_string(),
            "--pass_fd".into(),
            RESULT_FD.to_string(),
        ]);
        if self.isolation.user_namespace {
            let mapping = format!("{JAIL_UID}:{JAIL_UID}:1");
            args.extend(["--user".into(), mapping.clone(), "--group".into(), mapping]);
        } else {
            args.extend([
                "--disable_clone_newuser".into(),
                "--user".into(),
                JAIL_UID.to_string(),
                "--group".into(),
                JAIL_UID.to_string(),
            ]);
        }
        if let Some(mount) = &self.venv_mount {
            args.extend(["--bindmount_ro".into(), mount.clone()]);
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
