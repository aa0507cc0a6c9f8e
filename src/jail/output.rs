//! The one reader of a jail's pipes (the script's stdout and stderr, nsjail's log): keeps the
//! first `cap` bytes and discards the rest, so that a writer never blocks on a full pipe.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;
use tokio::net::unix::pipe;
use tokio::sync::watch;
use tokio::task::JoinHandle;

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

    fn keep(&mut self, chunk: &[u8], cap: usize) {
        let room = cap.saturating_sub(self.bytes.len());
        if chunk.len() > room {
            self.truncated = true;
        }
        self.bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
}

/// Reads a pipe until EOF or, with `finished`, until that is set and the pipe is empty. The
/// runner sets the stage for the latter: it kills and reaps every other process in the jail
/// before its report, so once the report is in, nothing can write any more (while nsjail,
/// which holds a copy of the write end until it exits, would delay EOF).
pub async fn read_capped(pipe: pipe::Receiver, cap: usize, finished: Option<watch::Receiver<bool>>) -> Captured {
    let mut captured = Captured::default();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut finished = finished;
    loop {
        match pipe.try_read(&mut buffer) {
            Ok(0) => return captured,
            Ok(n) => {
                captured.keep(&buffer[..n], cap);
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return captured,
        }
        let finishing = async {
            match finished.as_mut() {
                Some(finished) => {
                    let _ = finished.changed().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ready = pipe.readable() => if ready.is_err() { return captured },
            _ = finishing => break,
        }
    }
    // Finished (or the sender is gone): empty the pipe with plain reads. tokio's try_read
    // trusts readiness it has already seen, which may lag behind what the pipe holds.
    loop {
        // SAFETY: read(2) into a buffer we own, on the pipe's fd, which `pipe` keeps open.
        let n = unsafe { libc::read(pipe.as_raw_fd(), buffer.as_mut_ptr().cast(), buffer.len()) };
        match n {
            n if n > 0 => captured.keep(&buffer[..n as usize], cap),
            0 => return captured,
            _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => continue,
            _ => return captured,
        }
    }
}

/// Waits `within` for both readers to reach EOF, then tells them to take what the pipes hold
/// and stop: what was read is kept on every ending, never dropped for being late.
pub async fn collect(
    mut stdout: JoinHandle<Captured>,
    mut stderr: JoinHandle<Captured>,
    finished: &watch::Sender<bool>,
    within: Duration,
) -> (Captured, Captured) {
    let both = async { tokio::join!(&mut stdout, &mut stderr) };
    let (out, err) = match tokio::time::timeout(within, both).await {
        Ok(both) => both,
        Err(_) => {
            let _ = finished.send(true);
            tokio::join!(stdout, stderr)
        }
    };
    (out.unwrap_or_default(), err.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{FromRawFd, OwnedFd};
    use tokio::net::unix::pipe;

    #[tokio::test]
    async fn output_read_before_a_late_end_is_kept() {
        let (finished, finished_rx) = watch::channel(false);
        let reader = |text: &'static [u8]| {
            use std::io::Write;
            let mut fds = [0; 2];
            // SAFETY: pipe2 fills the array with two new fds, owned from here on.
            assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
            let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
            // SAFETY: fcntl on an fd we own: the reading end is non-blocking, as tokio wants.
            unsafe { libc::fcntl(r.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
            let mut writer = std::fs::File::from(w);
            writer.write_all(text).unwrap();
            // The writer stays open (a jail that does not die): no EOF comes.
            let pipe = pipe::Receiver::from_owned_fd(r).unwrap();
            let reading = tokio::spawn(read_capped(pipe, 1024, Some(finished_rx.clone())));
            (writer, reading)
        };
        let (_out_writer, stdout) = reader(b"printed before the end\n");
        let (_err_writer, stderr) = reader(b"warned\n");
        let (stdout, stderr) = collect(stdout, stderr, &finished, Duration::from_millis(200)).await;
        assert_eq!(stdout.text(), "printed before the end\n");
        assert_eq!(stderr.text(), "warned\n");
    }
}
