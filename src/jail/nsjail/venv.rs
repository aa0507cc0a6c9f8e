//! How nsjail reaches the sandbox virtualenv, wherever the checkout lives.
//!
//! nsjail bind-mounts its sources from inside the jail's user namespace, as the jail's uid:
//! a virtualenv under a directory that uid cannot traverse (a checkout under /root, mode 0700
//! on Debian, or in a `mktemp -d`) cannot be mounted, and the user-namespace rung would fail.
//! So each nsjail starts in a mount namespace of its own (made private first, so nothing
//! reaches the host's), where the service, still root, binds the virtualenv onto [`STAGE`]; nsjail
//! then binds it from there. The jail itself never sees [`STAGE`] (its /dev/shm is a fresh
//! tmpfs), and the host's /dev/shm is untouched.
//!
//! The virtualenv's path is canonicalised once at start-up and resolved by root: nothing on it
//! is writable by a jail.

use std::ffi::CStr;
use std::io;

/// A directory every Linux system has and every uid can traverse.
pub const STAGE: &str = "/dev/shm";
const STAGE_C: &CStr = c"/dev/shm";

/// Gives the calling process (nsjail, between fork and exec) a private mount namespace with
/// `venv` bound onto [`STAGE`].
///
/// # Safety
/// Async-signal-safe: only syscalls on memory prepared before fork.
pub unsafe fn stage(venv: &CStr) -> io::Result<()> {
    let root = c"/";
    if libc::unshare(libc::CLONE_NEWNS) != 0
        || libc::mount(
            std::ptr::null(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        || libc::mount(
            venv.as_ptr(),
            STAGE_C.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND | libc::MS_REC,
            std::ptr::null(),
        ) != 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
