//! The sockets and pipes between the service and a zygote: a config handed over on a pipe,
//! the control socket (SOCK_SEQPACKET), fds passed with SCM_RIGHTS and the child's host pid
//! learnt from SCM_CREDENTIALS.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// A pipe holding `content` whose read end nsjail reads as `/proc/self/fd/N` (not close-on-exec).
pub fn content_pipe(content: &[u8]) -> io::Result<OwnedFd> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into the array on success.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds were just created and are owned by nothing else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    if content.len() > 60 * 1024 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "config larger than a pipe holds",
        ));
    }
    let mut written = 0;
    while written < content.len() {
        // SAFETY: write(2) from a live slice to a pipe we own.
        let n = unsafe {
            libc::write(
                w.as_raw_fd(),
                content[written..].as_ptr().cast(),
                content.len() - written,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        written += n as usize;
    }
    Ok(r)
}

/// A connected pair of SOCK_SEQPACKET unix sockets (messages keep their bounds and their fds).
pub fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: socketpair writes two fds into the array on success.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    } < 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds were just created and are owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

pub fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: fcntl on an fd we own.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Sends one message with `fds` attached (SCM_RIGHTS). Non-blocking: WouldBlock if full.
fn send_with_fds(socket: RawFd, message: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let fd_bytes = std::mem::size_of_val(fds);
    // SAFETY: CMSG_SPACE is arithmetic.
    let space = unsafe { libc::CMSG_SPACE(fd_bytes as u32) } as usize;
    let mut control = vec![0u8; space];
    let mut iov = libc::iovec {
        iov_base: message.as_ptr() as *mut libc::c_void,
        iov_len: message.len(),
    };
    // SAFETY: msghdr is plain data; every pointer set below stays valid during sendmsg.
    unsafe {
        let mut header: libc::msghdr = std::mem::zeroed();
        header.msg_iov = &mut iov;
        header.msg_iovlen = 1;
        header.msg_control = control.as_mut_ptr().cast();
        header.msg_controllen = space;
        let cmsg = libc::CMSG_FIRSTHDR(&header);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(fd_bytes as u32) as usize;
        std::ptr::copy_nonoverlapping(fds.as_ptr().cast::<u8>(), libc::CMSG_DATA(cmsg), fd_bytes);
        let sent = libc::sendmsg(socket, &header, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT);
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        if sent as usize != message.len() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "message cut short"));
        }
    }
    Ok(())
}

/// Receives one message and the sender's credentials (SO_PASSCRED must be on), closing any fd
/// that came with it. Non-blocking. The pid is as this process's PID namespace sees it.
fn recv_with_credentials(socket: RawFd, buffer: &mut [u8]) -> io::Result<(usize, Option<libc::ucred>)> {
    // SAFETY: CMSG_SPACE is arithmetic.
    let space =
        unsafe { libc::CMSG_SPACE(std::mem::size_of::<libc::ucred>() as u32) as usize + libc::CMSG_SPACE(64) as usize };
    let mut control = vec![0u8; space];
    let mut iov = libc::iovec {
        iov_base: buffer.as_mut_ptr().cast(),
        iov_len: buffer.len(),
    };
    let mut credentials = None;
    // SAFETY: msghdr is plain data; every pointer set below stays valid during recvmsg, and
    // the control messages are read within the length the kernel reports.
    unsafe {
        let mut header: libc::msghdr = std::mem::zeroed();
        header.msg_iov = &mut iov;
        header.msg_iovlen = 1;
        header.msg_control = control.as_mut_ptr().cast();
        header.msg_controllen = space;
        let received = libc::recvmsg(socket, &mut header, libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC);
        if received < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut cmsg = libc::CMSG_FIRSTHDR(&header);
        while !cmsg.is_null() {
            let data = libc::CMSG_DATA(cmsg);
            let length = (*cmsg).cmsg_len as usize - (data as usize - cmsg as usize);
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_CREDENTIALS {
                if length >= std::mem::size_of::<libc::ucred>() {
                    credentials = Some(std::ptr::read_unaligned(data.cast::<libc::ucred>()));
                }
            } else if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                for i in 0..length / std::mem::size_of::<RawFd>() {
                    let fd = std::ptr::read_unaligned(data.cast::<RawFd>().add(i));
                    drop(OwnedFd::from_raw_fd(fd));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&header, cmsg);
        }
        Ok((received as usize, credentials))
    }
}

/// The host's end of a zygote's control socket.
pub struct Control(AsyncFd<OwnedFd>);

impl Control {
    pub fn new(fd: OwnedFd) -> io::Result<Control> {
        set_nonblocking(&fd)?;
        // SAFETY: the OwnedFd is open and AsyncFd owns it until dropped: the fd stays the same.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(|e| io::Error::other(e.to_string()))?;
        Ok(Control(fd))
    }

    /// Waits for one message (of at most `buffer.len()` bytes); 0 bytes means the peer is gone.
    pub async fn recv(&self, buffer: &mut [u8]) -> io::Result<(usize, Option<libc::ucred>)> {
        loop {
            let mut guard = self.0.ready(Interest::READABLE).await?;
            match guard.try_io(|fd| recv_with_credentials(fd.as_raw_fd(), buffer)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// Sends one message with fds attached, waiting while the socket is full.
    pub async fn send(&self, message: &[u8], fds: &[RawFd]) -> io::Result<()> {
        loop {
            let mut guard = self.0.ready(Interest::WRITABLE).await?;
            match guard.try_io(|fd| send_with_fds(fd.as_raw_fd(), message, fds)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// Whether the other end has been closed (its process ended).
    pub fn peer_closed(&self) -> bool {
        let mut poll = libc::pollfd {
            fd: self.0.as_raw_fd(),
            events: libc::POLLRDHUP,
            revents: 0,
        };
        // SAFETY: poll(2) on one pollfd we own, without waiting.
        let n = unsafe { libc::poll(&mut poll, 1, 0) };
        n != 0 && (n < 0 || poll.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0)
    }

    /// Asks the kernel to attach the sender's credentials to every message received here.
    pub fn pass_credentials(&self) -> io::Result<()> {
        let on: libc::c_int = 1;
        // SAFETY: setsockopt with a pointer to a live int of the size given.
        let result = unsafe {
            libc::setsockopt(
                self.0.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PASSCRED,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if result < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// A blocking pipe end for the child, and its non-blocking, close-on-exec other end for us.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into the array on success.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds were just created and are owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}
