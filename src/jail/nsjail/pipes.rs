//! The pipes between the service and a jail's nsjail: ours non-blocking, nsjail's blocking,
//! and the output pipes' mode that lets the jail reopen them.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A close-on-exec pipe: the read end (ours) non-blocking, the write end (nsjail's) blocking.
pub(super) fn make_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
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

/// Lets the jail's uid reopen one of its output pipes for writing through /proc/self/fd/N
/// (what /dev/stdout and /dev/stderr point to): a pipe is created owner-only (0600) and its
/// owner is root, so `open('/dev/stdout', 'w')` would fail. Write-only for others is safe:
/// reaching the pipe through /proc needs a process that holds it, i.e. the jail itself (or
/// root); writing is what the jail may do to it anyway; reading stays owner-only, so nothing
/// but the service reads the output. The result pipe (fd 3) keeps 0600: it cannot be reopened.
pub(crate) fn writable_by_jail(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: fchmod on an fd we own.
    if unsafe { libc::fchmod(fd.as_raw_fd(), 0o602) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
