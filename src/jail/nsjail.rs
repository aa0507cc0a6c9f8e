//! Jails: one nsjail process per execution, built from the top-level `nsjail.cfg` plus what the
//! start-up probe chose for this machine (user namespace or not, cgroups or rlimits only).
//!
//! A jail's runner is handed its script on stdin; the script's stdout and stderr come back on
//! pipes read with caps; its result comes back on fd 3, a pipe of its own; nsjail's log goes to
//! fd 4 and only ever into the service's own logs. The host touches no path inside the jail.

use crate::cgroup::{CgroupLimits, Cgroups, JailCgroup};
use crate::config::Limits;
use crate::runner::{self, FrameError, Report, RunRequest, READY};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::process::{Child, ChildStdin};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The result channel's fd number inside the jail, and nsjail's log fd in nsjail itself.
const RESULT_FD: RawFd = 3;
const LOG_FD: RawFd = 4;
/// The interpreter path inside the jail when the sandbox Python is a virtualenv.
const JAIL_VENV: &str = "/opt/venv";
/// Address space allowed above the memory limit when a cgroup enforces the latter.
const ADDRESS_SPACE_HEADROOM_MB: u64 = 512;
/// How much of nsjail's own log is kept for the service's diagnostics.
const LOG_KEEP: usize = 16 * 1024;
/// How often a running jail's cgroup is checked for an out-of-memory kill.
const OOM_POLL: Duration = Duration::from_millis(100);

/// What a jail imports before its script arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flavour {
    Plain,
    /// numpy and pandas already imported.
    Data,
}

impl Flavour {
    pub fn modules(self) -> &'static [&'static str] {
        match self {
            Flavour::Plain => &[],
            Flavour::Data => crate::validation::DATA_LIBRARIES,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Flavour::Plain => "plain",
            Flavour::Data => "data",
        }
    }
}

/// The isolation the probe settled on.
#[derive(Debug, Clone)]
pub struct Isolation {
    pub user_namespace: bool,
    pub cgroups: Option<Arc<Cgroups>>,
}

impl Isolation {
    pub fn describe(&self) -> String {
        format!(
            "{} user namespace, {}",
            if self.user_namespace { "with" } else { "without" },
            match &self.cgroups {
                Some(c) => format!("cgroup {} limits", c.version().as_str()),
                None => "rlimits only (no cgroups)".into(),
            }
        )
    }
}

/// Why a jail could not run a script: the service's problem, never the script's.
#[derive(Debug)]
pub struct SandboxError {
    pub message: String,
    /// The tail of nsjail's own log, for the service's logs only.
    pub nsjail_log: String,
}

impl SandboxError {
    fn new(message: impl Into<String>) -> SandboxError {
        SandboxError {
            message: message.into(),
            nsjail_log: String::new(),
        }
    }
}

/// How to start jails on this machine.
#[derive(Debug)]
pub struct Sandbox {
    nsjail: PathBuf,
    config: PathBuf,
    jail_python: String,
    venv_mount: Option<String>,
    pub isolation: Isolation,
    pub limits: Limits,
}

/// Output read from one of the jail's pipes, capped.
#[derive(Debug, Default, Clone)]
pub struct Captured {
    pub bytes: Vec<u8>,
    pub truncated: bool,
}

impl Captured {
    /// UTF-8 with replacement; a character cut by the cap is dropped rather than mangled.
    pub fn text(&self) -> String {
        let mut bytes = &self.bytes[..];
        if self.truncated {
            if let Err(e) = std::str::from_utf8(bytes) {
                if e.error_len().is_none() {
                    bytes = &bytes[..e.valid_up_to()];
                }
            }
        }
        String::from_utf8_lossy(bytes).into_owned()
    }
}

/// How an execution ended, as seen from the host.
#[derive(Debug)]
pub enum Ending {
    /// The runner reported (a value, an error, or the script's process exiting).
    Reported(Report),
    /// The wall-time limit ran out; the jail was killed.
    TimedOut,
    /// The kernel killed the jail (or part of it) for exceeding its memory limit.
    OutOfMemory,
    /// The result channel carried something that is not the protocol: the script tampered.
    Corrupted(&'static str),
    /// The runner vanished without a report (and not for memory): exit status of the jail.
    Vanished {
        exit_code: Option<i32>,
        signal: Option<i32>,
    },
}

#[derive(Debug)]
pub struct Execution {
    pub ending: Ending,
    pub stdout: Captured,
    pub stderr: Captured,
}

impl Sandbox {
    pub fn new(
        nsjail: &Path,
        config: &Path,
        python: &Path,
        isolation: Isolation,
        limits: Limits,
    ) -> Result<Sandbox, String> {
        for (name, path) in [
            ("NSJAIL_PATH", nsjail),
            ("NSJAIL_CONFIG", config),
            ("SANDBOX_PYTHON", python),
        ] {
            if !path.exists() {
                return Err(format!("{name}: {} does not exist", path.display()));
            }
        }
        // A virtualenv (pyvenv.cfg beside its bin/) is mounted read-only at a fixed path, so
        // no host path shows up inside the jail; a Python under /usr is already mounted.
        let (jail_python, venv_mount) = match python.parent().and_then(Path::parent) {
            Some(venv) if venv.join("pyvenv.cfg").exists() => {
                let venv = venv.canonicalize().map_err(|e| format!("SANDBOX_PYTHON: {e}"))?;
                let file = python.file_name().and_then(|f| f.to_str()).unwrap_or("python3");
                (
                    format!("{JAIL_VENV}/bin/{file}"),
                    Some(format!("{}:{JAIL_VENV}", venv.display())),
                )
            }
            _ if python.starts_with("/usr/") => (python.display().to_string(), None),
            _ => {
                return Err(format!(
                    "SANDBOX_PYTHON: {} is neither under /usr nor in a virtualenv",
                    python.display()
                ))
            }
        };
        Ok(Sandbox {
            nsjail: nsjail.to_path_buf(),
            config: config.to_path_buf(),
            jail_python,
            venv_mount,
            isolation,
            limits,
        })
    }

    /// nsjail's arguments for one jail (everything but the fds, which `spawn` sets up).
    fn arguments(&self, flavour: Flavour, lifetime: Duration, warm: bool, memory_bytes: u64) -> Vec<String> {
        let mut args: Vec<String> = vec!["--config".into(), self.config.display().to_string()];
        args.extend([
            "--log_fd".into(),
            LOG_FD.to_string(),
            "--pass_fd".into(),
            RESULT_FD.to_string(),
        ]);
        if self.isolation.user_namespace {
            args.extend([
                "--user".into(),
                "65534:65534:1".into(),
                "--group".into(),
                "65534:65534:1".into(),
            ]);
        } else {
            args.extend([
                "--disable_clone_newuser".into(),
                "--user".into(),
                "65534".into(),
                "--group".into(),
                "65534".into(),
            ]);
        }
        if let Some(mount) = &self.venv_mount {
            args.extend(["--bindmount_ro".into(), mount.clone()]);
        }
        let memory_mb = (memory_bytes / (1024 * 1024)).max(1);
        // With a memory cgroup, that is the limit on memory actually used; the address-space
        // limit leaves room above it for what libraries reserve without using (numpy and
        // pandas reserve far more than they touch). Without one, RLIMIT_AS is the limit.
        let address_space_mb = if self.isolation.cgroups.is_some() {
            memory_mb + ADDRESS_SPACE_HEADROOM_MB
        } else {
            memory_mb
        };
        // Backstops behind the service's own wall clock and cgroups.
        let cpu_seconds = lifetime.as_secs() + 2;
        args.extend([
            "--time_limit".into(),
            (lifetime.as_secs() + 5).to_string(),
            "--rlimit_as".into(),
            address_space_mb.to_string(),
            "--rlimit_cpu".into(),
            cpu_seconds.to_string(),
        ]);
        if self.isolation.cgroups.is_none() {
            // Without a pids cgroup, RLIMIT_NPROC is the only bound on processes and threads.
            args.extend(["--rlimit_nproc".into(), self.limits.max_processes.to_string()]);
        }
        args.push("--".into());
        args.extend([
            self.jail_python.clone(),
            "-I".into(),
            "-B".into(),
            "-c".into(),
            runner::RUNNER_SOURCE.into(),
        ]);
        args.push(if warm { "warm" } else { "cold" }.into());
        args.extend(flavour.modules().iter().map(|m| m.to_string()));
        args
    }

    /// Starts a jail whose runner loads `flavour` and waits for a script. `lifetime` bounds
    /// how long the jail may exist at all (waiting in a pool included). A `warm` jail (for the
    /// pool) also loads everything the runner may need, to be quick once the script comes, and
    /// gets CPU only when requests leave some over until `to_foreground`.
    /// `memory_bytes` is the jail's memory limit: the service's, or lower for one request.
    pub fn spawn(
        &self,
        flavour: Flavour,
        lifetime: Duration,
        warm: bool,
        memory_bytes: u64,
    ) -> Result<Jail, SandboxError> {
        let cgroup = match &self.isolation.cgroups {
            Some(cgroups) => Some(
                cgroups
                    .create(&CgroupLimits {
                        memory_bytes,
                        max_processes: self.limits.max_processes,
                        cpus: self.limits.jail_cpus,
                        background: warm,
                    })
                    .map_err(|e| SandboxError::new(format!("cannot create the jail's cgroup: {e}")))?,
            ),
            None => None,
        };
        let mut guard = CgroupGuard(cgroup);
        let (result_r, result_w) = make_pipe().map_err(|e| SandboxError::new(format!("pipe: {e}")))?;
        let (log_r, log_w) = make_pipe().map_err(|e| SandboxError::new(format!("pipe: {e}")))?;

        // stdout and stderr are pipes of our own rather than tokio's, so that they can be
        // drained without waiting for EOF (nsjail holds a copy of each until it exits).
        let (stdout_r, stdout_w) = make_pipe().map_err(|e| SandboxError::new(format!("pipe: {e}")))?;
        let (stderr_r, stderr_w) = make_pipe().map_err(|e| SandboxError::new(format!("pipe: {e}")))?;
        let mut command = std::process::Command::new(&self.nsjail);
        command
            .args(self.arguments(flavour, lifetime, warm, memory_bytes))
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::from(stdout_w))
            .stderr(Stdio::from(stderr_w));
        let join_files: Vec<std::ffi::CString> = guard.0.as_ref().map(|c| c.join_files().to_vec()).unwrap_or_default();
        let (result_w_fd, log_w_fd) = (result_w.as_raw_fd(), log_w.as_raw_fd());
        // SAFETY: only async-signal-safe calls (open, write, close, fcntl, dup2, prctl) on
        // memory prepared before fork.
        unsafe {
            command.pre_exec(move || {
                for file in &join_files {
                    let fd = libc::open(file.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                    if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                        return Err(io::Error::last_os_error());
                    }
                    libc::close(fd);
                }
                // Move both pipe ends clear of 3 and 4 first, then into place (dup2 clears
                // close-on-exec on the copies).
                let high_result = libc::fcntl(result_w_fd, libc::F_DUPFD_CLOEXEC, 10);
                let high_log = libc::fcntl(log_w_fd, libc::F_DUPFD_CLOEXEC, 10);
                if high_result < 0
                    || high_log < 0
                    || libc::dup2(high_result, RESULT_FD) < 0
                    || libc::dup2(high_log, LOG_FD) < 0
                {
                    return Err(io::Error::last_os_error());
                }
                // If the service dies, its jails die with it.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut command = tokio::process::Command::from(command);
        command.kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|e| SandboxError::new(format!("cannot start nsjail: {e}")))?;
        drop(result_w);
        drop(log_w);
        drop(command);
        let Some(stdin) = child.stdin.take() else {
            return Err(SandboxError::new("nsjail's stdin is missing"));
        };
        let receiver = |fd| pipe::Receiver::from_owned_fd(fd).map_err(|e| SandboxError::new(format!("pipe: {e}")));
        let (result, log) = (receiver(result_r)?, receiver(log_r)?);
        let (stdout, stderr) = (receiver(stdout_r)?, receiver(stderr_r)?);
        let log_reader = tokio::spawn(read_capped(log, LOG_KEEP));
        Ok(Jail {
            child,
            stdin: Some(stdin),
            stdout: Some(stdout),
            stderr: Some(stderr),
            result,
            log_reader,
            cgroup: guard.0.take(),
            output_cap: self.limits.max_output_bytes,
            started: Instant::now(),
        })
    }
}

/// Removes a cgroup if `spawn` fails halfway.
struct CgroupGuard(Option<JailCgroup>);

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        if let Some(cgroup) = self.0.take() {
            cgroup.remove();
        }
    }
}

fn make_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into the array on success.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds were just created and are owned by nothing else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // The write ends go to nsjail, which expects blocking fds.
    // SAFETY: fcntl on an fd we own.
    unsafe {
        let flags = libc::fcntl(w.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(w.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK);
    }
    Ok((r, w))
}

/// Reads a jail's output, keeping the first `cap` bytes and discarding the rest (so writers
/// never block), until EOF or until `finished` is set and the pipe is empty. The runner sets
/// the stage for the latter: it kills and reaps every other process in the jail before its
/// report, so once the report is in, nothing can write any more.
async fn read_output(pipe: pipe::Receiver, cap: usize, mut finished: watch::Receiver<bool>) -> Captured {
    let mut captured = Captured::default();
    let mut buffer = vec![0u8; 64 * 1024];
    let keep = |captured: &mut Captured, chunk: &[u8]| {
        let room = cap.saturating_sub(captured.bytes.len());
        if chunk.len() > room {
            captured.truncated = true;
        }
        captured.bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
    };
    loop {
        match pipe.try_read(&mut buffer) {
            Ok(0) => return captured,
            Ok(n) => {
                keep(&mut captured, &buffer[..n]);
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return captured,
        }
        tokio::select! {
            ready = pipe.readable() => if ready.is_err() { return captured },
            _ = finished.changed() => break,
        }
    }
    // Finished (or the sender is gone): empty the pipe with plain reads. tokio's try_read
    // trusts readiness it has already seen, which may lag behind what the pipe holds.
    loop {
        // SAFETY: read(2) into a buffer we own, on the pipe's fd, which `pipe` keeps open.
        let n = unsafe { libc::read(pipe.as_raw_fd(), buffer.as_mut_ptr().cast(), buffer.len()) };
        match n {
            n if n > 0 => keep(&mut captured, &buffer[..n as usize]),
            0 => return captured,
            _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => continue,
            _ => return captured,
        }
    }
}

/// Reads to EOF, keeping the first `cap` bytes and draining the rest (so the writer never blocks).
async fn read_capped<R: AsyncRead + Unpin>(mut reader: R, cap: usize) -> Captured {
    let mut captured = Captured::default();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => return captured,
            Ok(n) => {
                let room = cap.saturating_sub(captured.bytes.len());
                if n > room {
                    captured.truncated = true;
                }
                captured.bytes.extend_from_slice(&buffer[..n.min(room)]);
            }
        }
    }
}

/// A started jail: its runner is loading or waiting for a script.
pub struct Jail {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Option<pipe::Receiver>,
    stderr: Option<pipe::Receiver>,
    result: pipe::Receiver,
    log_reader: JoinHandle<Captured>,
    cgroup: Option<JailCgroup>,
    output_cap: usize,
    pub started: Instant,
}

impl Jail {
    /// A pooled jail is about to serve a request: from now on it competes for CPU like any.
    pub fn to_foreground(&self) {
        if let Some(cgroup) = &self.cgroup {
            cgroup.to_foreground();
        }
    }

    /// Whether the jail's nsjail is still running (a pooled jail may have been killed).
    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for the runner's `ready`. Anything else means the jail could not start.
    pub async fn wait_ready(&mut self, within: Duration) -> Result<(), SandboxError> {
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
            Ok(false) => Err(self.failure("the sandbox did not start").await),
            Err(_) => Err(self.failure("the sandbox did not become ready in time").await),
        }
    }

    /// Kills the jail and collects nsjail's log, to explain a start-up failure.
    async fn failure(&mut self, message: &str) -> SandboxError {
        self.kill();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await;
        let log = match tokio::time::timeout(Duration::from_secs(1), &mut self.log_reader).await {
            Ok(Ok(captured)) => captured.text(),
            _ => String::new(),
        };
        SandboxError {
            message: message.to_string(),
            nsjail_log: log,
        }
    }

    fn kill(&mut self) {
        if let Some(cgroup) = &self.cgroup {
            cgroup.kill_all();
        }
        // nsjail's child dies with nsjail (PDEATHSIG), and with it the jail's PID namespace.
        let _ = self.child.start_kill();
    }

    /// Hands over the script and waits for the end: a report, the time limit, or the jail dying.
    /// Consumes the jail: it is destroyed afterwards, whatever happened.
    pub async fn execute(mut self, request: RunRequest<'_>, timeout: Duration) -> Execution {
        let cap = self.output_cap;
        let (finished, finished_rx) = watch::channel(false);
        let (Some(stdout), Some(stderr)) = (self.stdout.take(), self.stderr.take()) else {
            return Execution {
                ending: Ending::Vanished {
                    exit_code: None,
                    signal: None,
                },
                stdout: Captured::default(),
                stderr: Captured::default(),
            };
        };
        let stdout = tokio::spawn(read_output(stdout, cap, finished_rx.clone()));
        let stderr = tokio::spawn(read_output(stderr, cap, finished_rx));
        let started = Instant::now();
        let deadline = tokio::time::Instant::from_std(started + timeout);

        let mut stdin = self.stdin.take();
        let encoded = request.encode();
        let feeding = async move {
            if let Some(stdin) = stdin.as_mut() {
                // A jail that dies early closes its stdin: the ending says why, not this.
                let _ = stdin.write_all(&encoded).await;
                let _ = stdin.shutdown().await;
            }
            drop(stdin);
        };
        let result_limit = request.result_limit_bytes + 64 * 1024;
        let result = &mut self.result;
        let reading = read_frame(result, result_limit);
        // cgroup v1 has no memory.oom.group: an out-of-memory kill takes one process and the
        // rest of the jail carries on (or waits for it until the time limit). Watch for one and
        // end the whole jail then, as v2's memory.oom.group does.
        let cgroup = self.cgroup.as_ref();
        let oom_watch = async move {
            match cgroup {
                Some(cgroup) => loop {
                    tokio::time::sleep(OOM_POLL).await;
                    if cgroup.oom_killed() {
                        break;
                    }
                },
                None => std::future::pending().await,
            }
        };
        let outcome = tokio::time::timeout_at(deadline, async {
            tokio::select! {
                frame = async { tokio::join!(feeding, reading).1 } => Some(frame),
                _ = oom_watch => None,
            }
        })
        .await;

        let ending = match outcome {
            Err(_) => Ending::TimedOut,
            Ok(None) => Ending::OutOfMemory,
            Ok(Some(frame)) if frame.len() > result_limit => Ending::Reported(Report::Error {
                kind: "result_too_large".into(),
                fields: Default::default(),
            }),
            Ok(Some(frame)) => match runner::parse_frame(&frame) {
                Ok(Report::Exited { signal: Some(9), .. }) if self.oom_killed() => Ending::OutOfMemory,
                Ok(report) => Ending::Reported(report),
                Err(FrameError::Missing) => {
                    // The runner itself died: wait for nsjail to say how.
                    let status = tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await;
                    if self.oom_killed() {
                        Ending::OutOfMemory
                    } else {
                        match status {
                            Ok(Ok(status)) => Ending::Vanished {
                                exit_code: status.code(),
                                signal: status.signal(),
                            },
                            _ => Ending::Vanished {
                                exit_code: None,
                                signal: None,
                            },
                        }
                    }
                }
                Err(FrameError::Malformed(why)) => Ending::Corrupted(why),
            },
        };
        if matches!(ending, Ending::TimedOut) || self.oom_killed() {
            self.kill();
        }
        if matches!(ending, Ending::Reported(_)) {
            // The runner reported after reaping every other process: what is in the pipes
            // is all there will be.
            let _ = finished.send(true);
        }
        // Otherwise the jail is dead or dying and the pipes reach EOF once nsjail exits.
        // nsjail's exit and the cgroup's removal happen after the answer (on drop).
        let grace = Duration::from_secs(2);
        let (stdout, stderr) = tokio::join!(collect(stdout, grace), collect(stderr, grace));
        drop(self);
        Execution { ending, stdout, stderr }
    }

    fn oom_killed(&self) -> bool {
        self.cgroup.as_ref().is_some_and(JailCgroup::oom_killed)
    }
}

impl Drop for Jail {
    /// Whatever happened, a jail ends killed, with its cgroup removed (off the async threads).
    fn drop(&mut self) {
        self.kill();
        self.log_reader.abort();
        if let Some(cgroup) = self.cgroup.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn_blocking(move || cgroup.remove())),
                Err(_) => cgroup.remove(),
            }
        }
    }
}

/// Reads one frame: a `tag length` line, then exactly `length` bytes. Stops early on EOF or
/// once more than `limit` bytes have come (the caller reports that as too large).
async fn read_frame(result: &mut pipe::Receiver, limit: usize) -> Vec<u8> {
    let mut frame = Vec::new();
    let mut expected: Option<usize> = None;
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        if let Some(total) = expected {
            if frame.len() >= total {
                frame.truncate(total);
                return frame;
            }
        }
        if frame.len() > limit {
            return frame;
        }
        let n = match result.read(&mut buffer).await {
            Ok(0) | Err(_) => return frame,
            Ok(n) => n,
        };
        frame.extend_from_slice(&buffer[..n]);
        if expected.is_none() {
            if let Some(newline) = frame.iter().position(|&b| b == b'\n') {
                let length = std::str::from_utf8(&frame[..newline])
                    .ok()
                    .and_then(|head| head.split_once(' '))
                    .and_then(|(_, n)| n.parse::<usize>().ok());
                match length {
                    Some(length) => expected = Some(newline + 1 + length),
                    // Not a frame header: let the parser say so.
                    None => return frame,
                }
            } else if frame.len() > 64 {
                return frame;
            }
        }
    }
}

async fn collect(handle: JoinHandle<Captured>, grace: Duration) -> Captured {
    let abort = handle.abort_handle();
    match tokio::time::timeout(grace, handle).await {
        Ok(Ok(captured)) => captured,
        _ => {
            abort.abort();
            Captured::default()
        }
    }
}
