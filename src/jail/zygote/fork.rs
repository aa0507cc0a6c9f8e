//! A zygote process and the host's side of talking to it: the zygote role's nsjail config,
//! starting a zygote, and handing one execution's fds to it (`zygote.py` is the other side).
//!
//! The zygote role differs from a jail's in two ways, both derived here from the one config:
//! - its seccomp policy is nsjail.cfg's with `ALLOW { unshare, mount, umount, clone }` in front
//!   (kafel takes the first rule that matches), so that the zygote can clone a child into new
//!   namespaces and the child can make its cgroup namespace and mounts; each child denies those
//!   calls again in its own filter (clone only with the namespace flags nsjail.cfg denies)
//!   before any script byte reaches it;
//! - a writable /proc mounted over nsjail.cfg's read-only one, so that a child can write its own
//!   uid_map (the child then mounts its own read-only /proc over it).
//! nsjail (this version) refuses a policy file beside the config's policy strings, and a config
//! read later replaces the earlier one whole: the derived config is passed on a pipe.

use super::socket::{content_pipe, pipe, seqpacket_pair, Control};
use crate::jail::cgroup::JailCgroup;
use crate::jail::ids::JailId;
use crate::jail::nsjail::{writable_by_jail, Nsjail, Role};
use crate::jail::output::{read_capped, Captured};
use crate::jail::{protocol, JailSpec};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

const ZYGOTE_SOURCE: &str = include_str!("../../zygote.py");

/// Calls nsjail.cfg denies that a zygote's child needs to become a jail: `(kafel name, x86-64
/// number)`. The one list both filters are made from.
pub const NAMESPACE_CALLS: [(&str, libc::c_long); 3] = [
    ("unshare", libc::SYS_unshare),
    ("mount", libc::SYS_mount),
    ("umount", libc::SYS_umount2),
];

/// What the zygote needs on top of them: clone, to make each child in new namespaces at once.
/// A child denies it again with the namespace flags nsjail.cfg denies (`clone_flags_denied`).
const CLONE: &str = "clone";

/// What the zygote keeps, in its own user namespace only: the right to take one of the
/// service's ids (mapped there) as its effective ids while it clones a child, whose user
/// namespace is then that id's (`zygote.py`).
const ZYGOTE_CAPABILITIES: [&str; 2] = ["CAP_SETUID", "CAP_SETGID"];

/// The zygote's fd for its control socket, and the extra mount its role needs.
const CONTROL_FD: RawFd = 3;
const PROC_RW_MOUNT: &str = "none:/proc:proc:rw";

/// The zygote role's nsjail config: `config` with the namespace calls allowed ahead of its policy.
fn zygote_config(config: &str) -> Result<String, String> {
    if config.contains("seccomp_policy_file") {
        return Err("the nsjail config uses a policy file; the zygote's policy is derived from seccomp_string".into());
    }
    let (policy, rest): (Vec<&str>, Vec<&str>) = config
        .lines()
        .partition(|line| line.trim_start().starts_with("seccomp_string:"));
    if policy.is_empty() {
        return Err("the nsjail config has no seccomp_string policy to derive the zygote's from".into());
    }
    let mut names: Vec<&str> = NAMESPACE_CALLS.iter().map(|(name, _)| *name).collect();
    names.push(CLONE);
    let mut derived = rest.join("\n");
    derived.push_str(&format!("\nseccomp_string: \"ALLOW {{ {} }}\"\n", names.join(", ")));
    for line in policy {
        derived.push_str(line);
        derived.push('\n');
    }
    Ok(derived)
}

/// The clone flags nsjail.cfg's policy denies a jail (`clone { (clone_flags & 0x...) != 0 }`),
/// 0 if it has no such rule; `Err` if it has a clone rule in another form (fail closed: a
/// zygote's children must not be let make namespaces a jail cannot).
fn clone_flags_denied(config: &str) -> Result<u64, String> {
    let rules: Vec<&str> = config
        .lines()
        .filter(|line| line.trim_start().starts_with("seccomp_string:") && line.contains("clone {"))
        .collect();
    let parse = |line: &str| {
        let rest = &line[line.find("clone_flags &")? + "clone_flags &".len()..];
        let hex = rest.trim_start().strip_prefix("0x")?;
        let end = hex.find(|c: char| !c.is_ascii_hexdigit()).unwrap_or(hex.len());
        u64::from_str_radix(&hex[..end], 16)
            .ok()
            .filter(|flags| *flags <= u64::from(u32::MAX))
    };
    match rules.as_slice() {
        [] => Ok(0),
        [rule] => parse(rule).ok_or_else(|| format!("cannot read the clone flags nsjail.cfg denies: {rule}")),
        _ => Err("nsjail.cfg has more than one clone rule; the zygote's children need exactly one".into()),
    }
}

/// The zygote's first argument: what `zygote.py` needs from the service: the calls its
/// children deny, the clone flags they deny, and the errno they answer (the config's first
/// `ERRNO(n)`, so that a script sees the same answer from either filter).
fn zygote_settings(config: &str) -> Result<String, String> {
    let numbers: Vec<libc::c_long> = NAMESPACE_CALLS.iter().map(|(_, nr)| *nr).collect();
    let errno = config
        .lines()
        .filter(|line| line.trim_start().starts_with("seccomp_string:"))
        .find_map(|line| {
            let rest = &line[line.find("ERRNO(")? + "ERRNO(".len()..];
            rest[..rest.find(')')?].trim().parse::<u32>().ok()
        })
        .unwrap_or(libc::EPERM as u32);
    let clone_flags = clone_flags_denied(config)?;
    Ok(serde_json::json!({ "deny": numbers, "clone_flags": clone_flags, "errno": errno }).to_string())
}

/// The namespaces a child makes of its own, as /proc/<pid>/ns names them.
pub const NAMESPACES: [&str; 7] = ["pid", "net", "mnt", "ipc", "uts", "user", "cgroup"];

/// A process's `NAMESPACES` as the host sees them (`/proc/<pid>/ns/*` links; `pid` may be
/// `self`); `None` unless every one could be read.
pub fn namespace_links(pid: &str) -> Option<Vec<String>> {
    NAMESPACES
        .iter()
        .map(|n| std::fs::read_link(format!("/proc/{pid}/ns/{n}")).ok())
        .map(|link| link.map(|l| l.display().to_string()))
        .collect()
}

/// How long a forked child may take to say `hello` (it does so first thing after fork).
pub const HELLO_WITHIN: Duration = Duration::from_secs(5);

/// The per-execution limits a child sets on itself (it can only lower the zygote's).
#[derive(Debug, Clone, Copy)]
pub struct ForkLimits {
    /// The execution's own host uid and gid (`jail::ids`), mapped to 65534 in its namespace.
    pub id: u32,
    pub address_space_bytes: u64,
    pub cpu_seconds: u64,
    pub processes: Option<u64>,
}

impl ForkLimits {
    fn message(&self) -> Vec<u8> {
        let mut limits = serde_json::json!({"as": self.address_space_bytes, "cpu": self.cpu_seconds});
        if let Some(processes) = self.processes {
            limits["nproc"] = processes.into();
        }
        let message = serde_json::json!({"id": self.id, "rlimits": limits});
        format!("fork {message}").into_bytes()
    }
}

/// One forked child that has said hello and waits for `go`, with the host's ends of its fds.
pub struct Forked {
    /// The child's pid as the host sees it (the kernel translated it).
    pub pid: libc::pid_t,
    pub ctl: Control,
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    pub result: OwnedFd,
}

impl Forked {
    /// Lets the child go on to become a jail (after the host has moved it into its cgroup).
    pub async fn go(&self) -> io::Result<()> {
        self.ctl.send(b"go", &[]).await
    }
}

/// Why a child's set-up failed, if it said so on its ctl (`error ...`).
pub async fn failure(ctl: &Control) -> Option<String> {
    let mut buffer = vec![0u8; 4096];
    match tokio::time::timeout(Duration::from_millis(200), ctl.recv(&mut buffer)).await {
        Ok(Ok((n, _))) if n > 0 => Some(String::from_utf8_lossy(&buffer[..n]).into_owned()),
        _ => None,
    }
}

/// Asks the zygote behind `control` to fork one execution; returns once the child said hello.
pub async fn fork(control: &Control, limits: &ForkLimits) -> Result<Forked, String> {
    let (stdin_r, stdin_w) = pipe().map_err(|e| format!("pipe: {e}"))?;
    let (stdout_r, stdout_w) = pipe().map_err(|e| format!("pipe: {e}"))?;
    let (stderr_r, stderr_w) = pipe().map_err(|e| format!("pipe: {e}"))?;
    for end in [&stdout_w, &stderr_w] {
        // /dev/stdout and /dev/stderr reopen them, as in a jail nsjail starts.
        writable_by_jail(end).map_err(|e| format!("pipe: {e}"))?;
    }
    let (result_r, result_w) = pipe().map_err(|e| format!("pipe: {e}"))?;
    let (ctl, ctl_child) = seqpacket_pair().map_err(|e| format!("socketpair: {e}"))?;
    let ctl = Control::new(ctl).map_err(|e| format!("ctl: {e}"))?;
    ctl.pass_credentials().map_err(|e| format!("SO_PASSCRED: {e}"))?;
    let fds = [
        stdin_r.as_raw_fd(),
        stdout_w.as_raw_fd(),
        stderr_w.as_raw_fd(),
        result_w.as_raw_fd(),
        ctl_child.as_raw_fd(),
    ];
    tokio::time::timeout(HELLO_WITHIN, control.send(&limits.message(), &fds))
        .await
        .map_err(|_| "the zygote does not take requests".to_string())?
        .map_err(|e| format!("cannot reach the zygote: {e}"))?;
    // Only the child holds these now.
    drop((stdin_r, stdout_w, stderr_w, result_w, ctl_child));
    let mut buffer = [0u8; 64];
    let (n, credentials) = tokio::time::timeout(HELLO_WITHIN, ctl.recv(&mut buffer))
        .await
        .map_err(|_| "the zygote's child did not say hello in time".to_string())?
        .map_err(|e| format!("ctl: {e}"))?;
    match (&buffer[..n], credentials) {
        (b"hello", Some(credentials)) if credentials.pid > 0 => Ok(Forked {
            pid: credentials.pid,
            ctl,
            stdin: stdin_w,
            stdout: stdout_r,
            stderr: stderr_r,
            result: result_r,
        }),
        (b"", _) => Err("the zygote's child ended before saying hello".into()),
        _ => Err("the zygote's child did not say hello".into()),
    }
}

/// Where the derived config and nsjail's log are inside nsjail (the control socket is at 3).
const LOG_FD: RawFd = 4;
const CONFIG_FD: RawFd = 5;
/// How much of a zygote's nsjail log (and its own stderr) is kept for the service's logs.
const LOG_KEEP: usize = 16 * 1024;

/// A running zygote: its nsjail, the host's end of its control socket, its own cgroup.
pub struct Zygote {
    control: Control,
    /// Waits for nsjail's exit; aborting it drops (and so kills, kill_on_drop) nsjail, and the
    /// zygote with every child it forked dies with nsjail's PID namespace.
    waiter: JoinHandle<()>,
    exited: Arc<AtomicBool>,
    broken: AtomicBool,
    forks: AtomicU64,
    started: Instant,
    cgroup: Option<JailCgroup>,
    log_reader: JoinHandle<Captured>,
    id: JailId,
    /// Its namespaces as the host sees them (`NAMESPACES`), read when it said `ready`.
    namespaces: Vec<String>,
}

/// How nsjail is to be started for a zygote: its arguments, with `/proc/self/fd/5` as the config
/// (`zygote_config`'s text is put there) and fds 3 (control) and 4 (log) passed.
pub struct ZygoteCommand {
    args: Vec<String>,
    config: String,
    /// The zygote's own host uid and gid (each execution it forks has another); given back with it.
    id: JailId,
}

impl ZygoteCommand {
    /// A zygote of `spec`'s flavour: nsjail's options for a jail of `spec`, with the zygote
    /// role's config (derived from nsjail.cfg) and extra mount, running `zygote.py`.
    /// The zygote runs as a host id of its own, `id`, as a jail does. Each execution it forks
    /// runs as another id of the service's: those are mapped (to themselves) into the zygote's
    /// user namespace, and the zygote keeps CAP_SETUID and CAP_SETGID there, and only there, so
    /// that a child can become its id before it makes its own user namespace.
    pub fn new(nsjail: &Nsjail, spec: &JailSpec, id: JailId) -> Result<ZygoteCommand, String> {
        let text = nsjail.config_text()?;
        if !nsjail.isolation.user_namespace {
            return Err("a zygote needs a user namespace".into());
        }
        let mut options = Vec::new();
        for (first, count) in nsjail.other_ids(id.get()) {
            let mapping = format!("{first}:{first}:{count}");
            options.extend(["--user".into(), mapping.clone(), "--group".into(), mapping]);
        }
        for cap in ZYGOTE_CAPABILITIES {
            options.extend(["--cap".into(), cap.into()]);
        }
        options.extend(["--mount".into(), PROC_RW_MOUNT.into()]);
        let mut args = vec![zygote_settings(&text)?, protocol::RUNNER_SOURCE.into()];
        args.extend(spec.flavour.modules().iter().map(|m| m.to_string()));
        let role = Role {
            // /proc/self/fd, not /dev/fd: a host without udev or systemd may have no /dev/fd.
            config: &format!("/proc/self/fd/{CONFIG_FD}"),
            options,
            source: ZYGOTE_SOURCE,
            args,
        };
        Ok(ZygoteCommand {
            args: nsjail.role_arguments(spec, id.get(), role),
            config: zygote_config(&text)?,
            id,
        })
    }
}

impl Zygote {
    /// Starts a zygote and waits for its `ready` (its modules imported).
    pub async fn start(
        nsjail: &Nsjail,
        command: ZygoteCommand,
        cgroup: Option<JailCgroup>,
        within: Duration,
    ) -> Result<Zygote, String> {
        let config = content_pipe(command.config.as_bytes()).map_err(|e| format!("config pipe: {e}"))?;
        let (control, control_child) = seqpacket_pair().map_err(|e| format!("socketpair: {e}"))?;
        let control = Control::new(control).map_err(|e| format!("control: {e}"))?;
        // Its `ready` then carries its host pid.
        control.pass_credentials().map_err(|e| format!("SO_PASSCRED: {e}"))?;
        let (log_r, log_w) = pipe().map_err(|e| format!("pipe: {e}"))?;
        let join_files: Vec<std::ffi::CString> = cgroup.as_ref().map(|c| c.join_files().to_vec()).unwrap_or_default();
        let fds = vec![
            (control_child.as_raw_fd(), CONTROL_FD),
            (log_w.as_raw_fd(), LOG_FD),
            (config.as_raw_fd(), CONFIG_FD),
        ];
        let mut std_command = nsjail.command(&command.args, join_files, fds);
        // The zygote's own stderr (a traceback if it fails) goes to the log pipe with nsjail's.
        let log_copy = log_w.try_clone().map_err(|e| format!("pipe: {e}"))?;
        std_command
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::from(log_copy));
        let mut tokio_command = tokio::process::Command::from(std_command);
        tokio_command.kill_on_drop(true);
        let mut child = tokio_command.spawn().map_err(|e| format!("cannot start nsjail: {e}"))?;
        drop((control_child, log_w, config, tokio_command));
        let log = tokio::net::unix::pipe::Receiver::from_owned_fd(log_r).map_err(|e| format!("pipe: {e}"))?;
        let log_reader = tokio::spawn(read_capped(log, LOG_KEEP, None));
        let exited = Arc::new(AtomicBool::new(false));
        let flag = exited.clone();
        let waiter = tokio::spawn(async move {
            let _ = child.wait().await;
            flag.store(true, Ordering::Release);
        });
        let mut zygote = Zygote {
            control,
            waiter,
            exited,
            broken: AtomicBool::new(false),
            forks: AtomicU64::new(0),
            started: Instant::now(),
            cgroup,
            log_reader,
            id: command.id,
            namespaces: Vec::new(),
        };
        let mut buffer = [0u8; 16];
        let outcome = tokio::time::timeout(within, zygote.control.recv(&mut buffer)).await;
        let why = match outcome {
            Ok(Ok((5, Some(credentials)))) if &buffer[..5] == b"ready" && credentials.pid > 0 => {
                match namespace_links(&credentials.pid.to_string()) {
                    Some(links) => {
                        zygote.namespaces = links;
                        return Ok(zygote);
                    }
                    None => "cannot read the zygote's namespaces",
                }
            }
            Err(_) => "the zygote did not become ready in time",
            _ => "the zygote did not start",
        };
        zygote.waiter.abort();
        let log = tokio::time::timeout(Duration::from_secs(2), &mut zygote.log_reader).await;
        let log = match log {
            Ok(Ok(captured)) => captured.text(),
            _ => String::new(),
        };
        Err(format!("{why}: {}", log.trim()))
    }

    /// The zygote's own host uid and gid.
    pub fn id(&self) -> u32 {
        self.id.get()
    }

    /// Its namespaces as the host sees them (`namespace_links`), read when it became ready.
    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }

    /// Why no more executions may be forked from this zygote, if so.
    pub fn spent(&self, max_forks: u64, max_age: Duration) -> Option<&'static str> {
        if self.exited.load(Ordering::Acquire) {
            Some("its nsjail exited")
        } else if self.broken.load(Ordering::Acquire) {
            Some("a fork failed")
        } else if self.forks.load(Ordering::Relaxed) >= max_forks {
            Some("it forked its share")
        } else if self.started.elapsed() >= max_age {
            Some("it reached its age")
        } else {
            None
        }
    }

    /// Marks the zygote as misbehaving: no more forks from it (it is replaced).
    pub fn set_broken(&self) {
        self.broken.store(true, Ordering::Release);
    }

    /// Forks one execution, moves it into `cgroup` (created by the caller with its limits) and
    /// lets it go on to become a jail. Any error means this zygote should not be used again.
    pub async fn fork(&self, limits: &ForkLimits, cgroup: &JailCgroup) -> Result<Forked, String> {
        self.forks.fetch_add(1, Ordering::Relaxed);
        let forked = fork(&self.control, limits).await?;
        // The child waits for `go` and holds its end of ctl until then: while that end is open
        // the pid is the child's, and cannot have been reused.
        for file in cgroup.join_files() {
            let path = std::path::Path::new(std::ffi::OsStr::from_bytes(file.as_bytes()));
            std::fs::write(path, forked.pid.to_string())
                .map_err(|e| format!("cannot move the child into its cgroup: {e}"))?;
            // Fail closed: the child must be seen in its cgroup before it may go on.
            let members = std::fs::read_to_string(path).unwrap_or_default();
            if !members.split_whitespace().any(|p| p == forked.pid.to_string()) {
                return Err("the child is not in its cgroup".into());
            }
        }
        if forked.ctl.peer_closed() {
            return Err("the zygote's child ended while it was moved into its cgroup".into());
        }
        forked.go().await.map_err(|e| format!("ctl: {e}"))?;
        Ok(forked)
    }
}

impl Drop for Zygote {
    fn drop(&mut self) {
        self.waiter.abort();
        self.log_reader.abort();
        self.cgroup.take(); // removed as it is dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_zygote_policy_allows_the_namespace_calls_ahead_of_the_config_policy() {
        let config = "name: \"x\"\nseccomp_string: \"ERRNO(1) { unshare, mount }\"\nseccomp_string: \"DEFAULT ALLOW\"\nmode: ONCE\n";
        let derived = zygote_config(config).unwrap();
        let lines: Vec<&str> = derived.lines().collect();
        assert_eq!(
            lines,
            [
                "name: \"x\"",
                "mode: ONCE",
                "seccomp_string: \"ALLOW { unshare, mount, umount, clone }\"",
                "seccomp_string: \"ERRNO(1) { unshare, mount }\"",
                "seccomp_string: \"DEFAULT ALLOW\"",
            ]
        );
        assert!(zygote_config("name: \"x\"\n").is_err());
        assert!(zygote_config("seccomp_policy_file: \"p\"\nseccomp_string: \"DEFAULT ALLOW\"\n").is_err());
    }

    #[test]
    fn the_child_filter_denies_exactly_what_the_zygote_policy_allows() {
        let config = "seccomp_string: \"ERRNO(38) {\"\nseccomp_string: \"  mount,\"\nseccomp_string: \"  clone { (clone_flags & 0x7e020080) != 0 }\"\nseccomp_string: \"}\"\n";
        let settings: serde_json::Value = serde_json::from_str(&zygote_settings(config).unwrap()).unwrap();
        // x86-64 numbers of the names kafel is given (kafel's `umount` is umount2).
        assert_eq!(settings["deny"], serde_json::json!([272, 165, 166]));
        assert_eq!(settings["clone_flags"], 0x7e020080);
        assert_eq!(settings["errno"], 38);
        let settings: serde_json::Value = serde_json::from_str(&zygote_settings("").unwrap()).unwrap();
        assert_eq!(
            (&settings["errno"], &settings["clone_flags"]),
            (&serde_json::json!(1), &serde_json::json!(0))
        );
        // A clone rule it cannot read stops the zygote rather than let its children clone freely.
        assert!(zygote_settings("seccomp_string: \"ERRNO(1) { clone { clone_flags > 7 } }\"\n").is_err());
    }

    #[test]
    fn the_real_config_derives() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/nsjail.cfg")).unwrap();
        let derived = zygote_config(&text).unwrap();
        assert!(derived.contains("ALLOW { unshare, mount, umount, clone }"));
        let settings: serde_json::Value = serde_json::from_str(&zygote_settings(&text).unwrap()).unwrap();
        assert_eq!(
            settings["clone_flags"], 0x7e020080,
            "the namespace flags nsjail.cfg denies"
        );
        assert_eq!(
            derived.lines().filter(|l| l.starts_with("seccomp_string:")).count(),
            text.lines().filter(|l| l.starts_with("seccomp_string:")).count() + 1
        );
    }
}
