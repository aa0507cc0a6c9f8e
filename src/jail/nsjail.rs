//! nsjail's launcher: one nsjail process per jail, built from the top-level `nsjail.cfg` plus
//! what the start-up probe chose for this machine (user namespace or not, cgroups or rlimits
//! only).
//!
//! A jail's runner is handed its script on stdin; the script's stdout and stderr come back on
//! pipes read with caps; its result comes back on fd 3, a pipe of its own; nsjail's log goes to
//! fd 4 and only ever into the service's own logs. The host touches no path inside the jail.

mod args;
mod facts;
mod pipes;
mod process;
mod role;
mod run;
mod venv;

use pipes::make_pipe;
pub(crate) use pipes::writable_by_jail;
pub(crate) use role::Role;

use crate::config::Limits;
use crate::jail::cgroup::{CgroupLimits, JailCgroup};
use crate::jail::ids::{JailId, JailIds};
use crate::jail::output::{collect, read_capped, Captured};
use crate::jail::protocol::{self, FrameError, RunRequest, READY};
use crate::jail::{
    deadline, Accounting, Ending, Execution, Isolation, IsolationFacts, JailError, JailSpec, Launcher, JAIL_UID,
};
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::process::Child;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The result channel's fd number inside the jail, and nsjail's log fd in nsjail itself.
const RESULT_FD: RawFd = 3;
const LOG_FD: RawFd = 4;
/// The interpreter path inside the jail when the sandbox Python is a virtualenv.
const JAIL_VENV: &str = "/opt/venv";
/// How much of nsjail's own log is kept for the service's diagnostics.
const LOG_KEEP: usize = 16 * 1024;
/// How often a running jail's cgroup is checked for an out-of-memory kill.
const OOM_POLL: Duration = Duration::from_millis(100);
/// Room for the frame's header and JSON wrapping above the result limit.
const FRAME_OVERHEAD: usize = 64 * 1024;

/// How to start jails with nsjail on this machine.
#[derive(Debug)]
pub struct Nsjail {
    nsjail: PathBuf,
    config: PathBuf,
    config_facts: facts::ConfigFacts,
    jail_python: String,
    /// The virtualenv's canonical host path, staged for nsjail by `venv`.
    venv: Option<std::ffi::CString>,
    ids: JailIds,
    pub isolation: Isolation,
    limits: Limits,
    /// The runner's code, marshalled by the sandbox's Python, in base64 (set by the probe).
    compiled_runner: Option<String>,
}

impl Nsjail {
    pub fn new(
        nsjail: &Path,
        config: &Path,
        python: &Path,
        isolation: Isolation,
        limits: Limits,
        uid_base: u32,
    ) -> Result<Nsjail, String> {
        let ids = JailIds::new(uid_base);
        // A virtualenv (pyvenv.cfg beside its bin/) is mounted read-only at a fixed path, so
        // no host path shows up inside the jail; a Python under /usr is already mounted.
        let (jail_python, venv) = match python.parent().and_then(Path::parent) {
            Some(venv) if venv.join("pyvenv.cfg").exists() => {
                let venv = venv.canonicalize().map_err(|e| format!("SANDBOX_PYTHON: {e}"))?;
                let file = python.file_name().and_then(|f| f.to_str()).unwrap_or("python3");
                let venv = std::ffi::CString::new(venv.into_os_string().into_encoded_bytes())
                    .map_err(|e| format!("SANDBOX_PYTHON: {e}"))?;
                (format!("{JAIL_VENV}/bin/{file}"), Some(venv))
            }
            _ if python.starts_with("/usr/") => (python.display().to_string(), None),
            _ => {
                return Err(format!(
                    "SANDBOX_PYTHON: {} is neither under /usr nor in a virtualenv",
                    python.display()
                ))
            }
        };
        Ok(Nsjail {
            nsjail: nsjail.to_path_buf(),
            config: config.to_path_buf(),
            config_facts: facts::ConfigFacts::read(config)?,
            jail_python,
            venv,
            ids,
            isolation,
            limits,
            compiled_runner: None,
        })
    }

    /// From now on jails load the runner from `code` (base64 of its marshalled code object, as
    /// the sandbox's Python made it) instead of compiling its source; too long a code is not used.
    /// Whether it is used.
    pub fn use_compiled_runner(&mut self, code: String) -> bool {
        let valid = code.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b));
        if valid && !code.is_empty() && code.len() <= protocol::MAX_COMPILED_RUNNER {
            self.compiled_runner = Some(code);
        }
        self.compiled_runner.is_some()
    }

    /// Whether a script that reports this uid and gid ran as one of this launcher's jails:
    /// 65534 inside a user namespace, one of the service's own ids without one.
    pub fn is_jail_identity(&self, uid: u32, gid: u32) -> bool {
        if self.isolation.user_namespace {
            (uid, gid) == (JAIL_UID, JAIL_UID)
        } else {
            uid == gid && self.ids.contains(uid)
        }
    }

    /// Starts nsjail for `spec`; its runner then loads and says `ready` (see `wait_ready`).
    /// A host uid and gid of the service's range, for a process that jails run in (a zygote).
    pub(crate) fn take_id(&self) -> Option<JailId> {
        self.ids.take()
    }

    /// The service's ids other than `id`, as (first, count) runs (see `JailIds::others`).
    pub(crate) fn other_ids(&self, id: u32) -> Vec<(u32, u32)> {
        self.ids.others(id)
    }

    fn spawn(&self, spec: &JailSpec) -> Result<NsjailJail, JailError> {
        let id = self
            .ids
            .take()
            .ok_or_else(|| JailError::new("every jail uid is in use"))?;
        let cgroup = match &self.isolation.cgroups {
            Some(cgroups) => Some(
                cgroups
                    .create(&CgroupLimits {
                        memory_bytes: spec.memory_bytes,
                        max_processes: self.limits.max_processes,
                        cpus: self.limits.jail_cpus,
                        warm: spec.warm,
                    })
                    .map_err(|e| JailError::new(format!("cannot create the jail's cgroup: {e}")))?,
            ),
            None => None,
        };
        let pipe_error = |e: io::Error| JailError::new(format!("pipe: {e}"));
        let (result_r, result_w) = make_pipe().map_err(pipe_error)?;
        let (log_r, log_w) = make_pipe().map_err(pipe_error)?;

        // stdout and stderr are pipes of our own rather than tokio's, so that they can be
        // drained without waiting for EOF (nsjail holds a copy of each until it exits).
        let (stdout_r, stdout_w) = make_pipe().map_err(pipe_error)?;
        let (stderr_r, stderr_w) = make_pipe().map_err(pipe_error)?;
        for end in [&stdout_w, &stderr_w] {
            writable_by_jail(end).map_err(pipe_error)?;
        }
        let join_files = cgroup.as_ref().map(|c| c.join_files().to_vec()).unwrap_or_default();
        let fds = vec![(result_w.as_raw_fd(), RESULT_FD), (log_w.as_raw_fd(), LOG_FD)];
        let mut command = self.command(&self.arguments(spec, id.get()), join_files, fds);
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::from(stdout_w))
            .stderr(Stdio::from(stderr_w));
        let mut command = tokio::process::Command::from(command);
        command.kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|e| JailError::new(format!("cannot start nsjail: {e}")))?;
        drop(result_w);
        drop(log_w);
        drop(command);
        let Some(stdin) = child.stdin.take() else {
            return Err(JailError::new("nsjail's stdin is missing"));
        };
        let receiver = |fd| pipe::Receiver::from_owned_fd(fd).map_err(pipe_error);
        let (result, log) = (receiver(result_r)?, receiver(log_r)?);
        let (stdout, stderr) = (receiver(stdout_r)?, receiver(stderr_r)?);
        let log_reader = tokio::spawn(read_capped(log, LOG_KEEP, None));
        Ok(NsjailJail {
            child: Some(child),
            parent: None,
            stdin: Some(Box::new(stdin)),
            stdout: Some(stdout),
            stderr: Some(stderr),
            result,
            log_reader,
            cgroup,
            _id: id,
            output_cap: self.limits.max_output_bytes,
            started: Instant::now(),
        })
    }
}

impl Launcher for Nsjail {
    type Jail = NsjailJail;

    async fn start(&self, spec: JailSpec) -> Result<NsjailJail, JailError> {
        let mut jail = self.spawn(&spec)?;
        jail.wait_ready(spec.start_within).await?;
        Ok(jail)
    }

    fn facts(&self) -> IsolationFacts {
        let isolation = &self.isolation;
        let mut namespaces = self.config_facts.namespaces.clone();
        if isolation.user_namespace {
            namespaces.push("user");
        }
        let (cgroup, resource_limits) = match &isolation.cgroups {
            Some(c) if c.has_cpu() => (Some(c.version().as_str()), "cgroup memory, pids, cpu + rlimits"),
            Some(c) => (Some(c.version().as_str()), "cgroup memory, pids + rlimits"),
            None => (None, "rlimits only"),
        };
        IsolationFacts {
            summary: isolation.describe(),
            network: if namespaces.contains(&"network") {
                "none"
            } else {
                "host"
            },
            namespaces,
            user_namespace: isolation.user_namespace,
            cgroup,
            resource_limits,
            seccomp: self.config_facts.seccomp,
            // Without a user namespace each jail runs as a host uid of its own: the first.
            uid: if isolation.user_namespace {
                JAIL_UID
            } else {
                self.ids.first()
            },
        }
    }
}

/// A started jail: its runner is loading or waiting for a script. Started by nsjail (`child`),
/// or forked by a zygote (`parent` keeps the zygote alive while the jail lives: the jail is
/// in the zygote's PID namespace tree and would die with it).
pub struct NsjailJail {
    child: Option<Child>,
    parent: Option<Arc<dyn std::any::Any + Send + Sync>>,
    stdin: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    stdout: Option<pipe::Receiver>,
    stderr: Option<pipe::Receiver>,
    result: pipe::Receiver,
    log_reader: JoinHandle<Captured>,
    cgroup: Option<JailCgroup>,
    /// The jail's host uid and gid, given back once the jail is destroyed (after `drop`).
    _id: JailId,
    output_cap: usize,
    started: Instant,
}
impl crate::jail::Jail for NsjailJail {
    fn started(&self) -> Instant {
        self.started
    }

    fn is_alive(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => true,
        }
    }

    fn to_foreground(&self) {
        if let Some(cgroup) = &self.cgroup {
            cgroup.to_foreground();
        }
    }

    fn run<'a>(
        self,
        request: RunRequest<'a>,
        timeout: Duration,
        stop: watch::Receiver<bool>,
    ) -> impl Future<Output = Execution> + Send + 'a {
        self.run_script(request, timeout, stop)
    }
}

impl NsjailJail {
    /// A jail forked by a zygote, from the host's ends of its pipes and its cgroup.
    pub(crate) fn forked(
        stdin: OwnedFd,
        stdout: OwnedFd,
        stderr: OwnedFd,
        result: OwnedFd,
        cgroup: JailCgroup,
        id: JailId,
        parent: Arc<dyn std::any::Any + Send + Sync>,
        output_cap: usize,
    ) -> Result<NsjailJail, JailError> {
        let pipe_error = |e: io::Error| JailError::new(format!("pipe: {e}"));
        let receiver = |fd| pipe::Receiver::from_owned_fd(fd).map_err(pipe_error);
        let stdin = pipe::Sender::from_owned_fd(stdin).map_err(pipe_error)?;
        Ok(NsjailJail {
            // The execution's own host id, given back when the jail is destroyed.
            _id: id,
            child: None,
            parent: Some(parent),
            stdin: Some(Box::new(stdin)),
            stdout: Some(receiver(stdout)?),
            stderr: Some(receiver(stderr)?),
            result: receiver(result)?,
            log_reader: tokio::spawn(async { Captured::default() }),
            cgroup: Some(cgroup),
            output_cap,
            started: Instant::now(),
        })
    }

    /// Waits for the runner's `ready`. Anything else means the jail could not start.
    pub(crate) async fn wait_ready(&mut self, within: Duration) -> Result<(), JailError> {
        let mut seen = Vec::with_capacity(READY.len());
        let reading = async {
            let mut byte = [0u8; 1];
            while seen.len() < READY.len() {
                match self.result.read(&mut byte).await {
                    Ok(1) => seen.push(byte[0]),
                    _ => return false,
                }
            }
            seen == READY
        };
        match tokio::time::timeout(within, reading).await {
            Ok(true) => Ok(()),
            Ok(false) => {
                let mut error = self.failure("the sandbox did not start").await;
                error.ended_before_ready = true;
                Err(error)
            }
            Err(_) => Err(self.failure("the sandbox did not become ready in time").await),
        }
    }

    /// Kills the jail and collects nsjail's log, to explain a start-up failure.
    async fn failure(&mut self, message: &str) -> JailError {
        self.kill();
        if let Some(child) = &mut self.child {
            let _ = tokio::time::timeout(deadline::DRAIN, child.wait()).await;
        }
        let mut log = match tokio::time::timeout(deadline::DRAIN, &mut self.log_reader).await {
            Ok(Ok(captured)) => captured.text(),
            _ => String::new(),
        };
        // No script has been handed over yet: what is on stderr is the interpreter's own
        // (a MemoryError while it starts, say). A bounded peek, for the service's log.
        if let Some(stderr) = &self.stderr {
            let mut head = vec![0u8; 4096];
            if let Ok(n) = stderr.try_read(&mut head) {
                log.push_str("\ninterpreter stderr: ");
                log.push_str(&String::from_utf8_lossy(&head[..n]));
            }
        }
        JailError {
            message: message.to_string(),
            log,
            ended_before_ready: false,
        }
    }

    fn kill(&mut self) {
        if let Some(cgroup) = &self.cgroup {
            cgroup.kill_all();
        }
        // nsjail's child dies with nsjail (PDEATHSIG), and with it the jail's PID namespace.
        if let Some(child) = &mut self.child {
            let _ = child.start_kill();
        }
    }
}

impl Drop for NsjailJail {
    /// Whatever happened, a jail ends killed, with its cgroup removed (off the async threads).
    fn drop(&mut self) {
        self.kill();
        self.log_reader.abort();
        self.parent.take();
        self.cgroup.take(); // removed as it is dropped
    }
}
