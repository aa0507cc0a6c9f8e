//! A client that closes its connection while its request runs. hyper sees the end of the
//! stream only when it reads, and it stops reading once a request is in and more bytes follow
//! it (a pipelined request, or the stray line break some clients send after a body): the
//! execution would run to its end for nobody, holding its slot. So the socket itself is
//! watched, on a descriptor of its own, for the peer's close (as for hyper's own notice, a
//! half-close counts: see the README's limits).

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Watches one connection's socket for the peer's close.
pub(super) struct Hangup(AsyncFd<OwnedFd>);

impl Hangup {
    /// A watch on `socket` (a duplicate of its descriptor, so that hyper's reads and this
    /// watch do not share readiness).
    pub(super) fn watch(socket: &impl AsFd) -> io::Result<Hangup> {
        let fd = socket.as_fd().try_clone_to_owned()?;
        // SAFETY: an OwnedFd is a valid descriptor, and stays open and the same for as long
        // as the AsyncFd that owns it.
        let watch = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }?;
        Ok(Hangup(watch))
    }

    /// Resolves once the peer has closed the connection or shut down its sending side; never
    /// if the watch fails.
    pub(super) async fn closed(self) {
        loop {
            let Ok(mut ready) = self.0.readable().await else {
                return std::future::pending().await;
            };
            if ready.ready().is_read_closed() {
                return;
            }
            // Bytes that hyper has not read yet: wait for the next event (edge-triggered, so
            // this does not spin on them).
            ready.clear_ready();
        }
    }
}
