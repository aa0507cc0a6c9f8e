//! How an nsjail process is started, whatever its jail runs: what happens between fork and
//! exec (cgroup joined, virtualenv staged, fds in place, death with the service).

use super::{venv, Nsjail};
use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;

impl Nsjail {
    /// nsjail with `args` and an empty environment; before it runs, the process joins the
    /// cgroups of `join_files`, gets the virtualenv staged (`venv`), and finds each fd of
    /// `fds` at its target number. It dies with the service. Stdio is the caller's to set.
    pub(crate) fn command(
        &self,
        args: &[String],
        join_files: Vec<CString>,
        fds: Vec<(RawFd, RawFd)>,
    ) -> std::process::Command {
        let mut command = std::process::Command::new(&self.nsjail);
        command.args(args).env_clear();
        let venv = self.venv.clone();
        let mut high: Vec<RawFd> = vec![0; fds.len()];
        // SAFETY: only async-signal-safe calls (open, write, close, fcntl, dup2, prctl,
        // unshare, mount) on memory prepared before fork.
        unsafe {
            command.pre_exec(move || {
                for file in &join_files {
                    let fd = libc::open(file.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                    if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                        return Err(io::Error::last_os_error());
                    }
                    libc::close(fd);
                }
                if let Some(venv) = &venv {
                    venv::stage(venv)?;
                }
                // Every fd clear of the targets first, then into place (dup2 clears
                // close-on-exec on the copies).
                for (i, (fd, _)) in fds.iter().enumerate() {
                    high[i] = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 10);
                    if high[i] < 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                for (i, (_, target)) in fds.iter().enumerate() {
                    if libc::dup2(high[i], *target) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                // If the service dies, its jails die with it.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        command
    }
}
