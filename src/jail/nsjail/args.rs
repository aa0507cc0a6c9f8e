//! nsjail's command line: what every jail gets (config, fds, ids, mounts, limits), then what
//! its `Role` runs: a jail's runner, or another program the caller names.

use super::{Nsjail, Role, JAIL_VENV, LOG_FD, RESULT_FD};
use crate::jail::{protocol, JailSpec, JAIL_UID};

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
/// A jail's PATH behind the virtualenv's bin when nsjail.cfg sets none (the C library's default).
const DEFAULT_PATH: &str = "/bin:/usr/bin";

impl Nsjail {
    /// nsjail's arguments for one jail (everything but the fds, which `spawn` sets up).
    /// `id` is the jail's own host uid and gid (see `jail::ids`).
    pub(super) fn arguments(&self, spec: &JailSpec, id: u32) -> Vec<String> {
        let (source, mut args) = match &self.compiled_runner {
            Some(code) => (protocol::RUNNER_BOOTSTRAP, vec![code.clone()]),
            None => (protocol::RUNNER_SOURCE, Vec::new()),
        };
        // The runner's own word for a warm jail.
        args.push(if spec.warm { "warm" } else { "cold" }.into());
        args.extend(spec.flavour.modules().iter().map(|m| m.to_string()));
        let config = self.config.display().to_string();
        let role = Role {
            config: &config,
            options: Vec::new(),
            source,
            args,
        };
        self.role_arguments(spec, id, role)
    }

    /// nsjail's arguments for a jail of `spec` that runs `role`, as host uid and gid `id`.
    pub(crate) fn role_arguments(&self, spec: &JailSpec, id: u32, role: Role) -> Vec<String> {
        let mut args = self.options(spec, role.config, id);
        args.extend(role.options);
        args.push("--".into());
        args.extend(self.interpreter(role.source));
        args.extend(role.args);
        args
    }

    /// The text of nsjail.cfg, for a role that derives a config of its own from it.
    pub(crate) fn config_text(&self) -> Result<String, String> {
        std::fs::read_to_string(&self.config).map_err(|e| format!("NSJAIL_CONFIG: {e}"))
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
            // `python3`, `python` and `pip` in a script's subprocess are the sandbox's own, with
            // its packages, as in an activated virtualenv (the host's /usr has another Python).
            let path = self.config_facts.path.as_deref().unwrap_or(DEFAULT_PATH);
            args.extend(["--env".into(), format!("PATH={JAIL_VENV}/bin:{path}")]);
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
