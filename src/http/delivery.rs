//! Getting answers to clients that are slow to read them, or never do. An answer waits in
//! the service's memory until its client has taken it; so that clients that never read cannot
//! grow the service without bound, answers waiting at once are held to a budget (past it, new
//! requests get 429 before anything runs), and a connection that takes no byte of its answer
//! for `ANSWER_WRITE_TIMEOUT_SECONDS` is dropped with the answer.

use hyper::body::{Bytes, Frame, SizeHint};
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// Above this many bytes of answers waiting for their clients, requests are refused (429).
const WAITING_BUDGET: usize = 64 << 20;

/// How much of an answer is handed to hyper at a time: it asks for more once its buffer has
/// room, so the rest stays here, counted, until the client reads.
const PIECE: usize = 64 << 10;

/// The bytes of answers not yet taken by their clients.
#[derive(Clone, Default)]
pub struct Waiting {
    bytes: Arc<AtomicUsize>,
}

impl Waiting {
    /// Whether answers waiting take the whole budget: new requests are refused meanwhile.
    pub fn is_full(&self) -> bool {
        self.bytes.load(Ordering::Acquire) >= WAITING_BUDGET
    }

    /// `answer` as a body counted here until the client has taken it or its connection is gone.
    pub fn body(&self, answer: Bytes) -> AnswerBody {
        self.bytes.fetch_add(answer.len(), Ordering::AcqRel);
        AnswerBody {
            held: Some((self.clone(), answer.len())),
            rest: answer,
        }
    }
}

/// An answer's body, handed to hyper in pieces.
pub struct AnswerBody {
    rest: Bytes,
    held: Option<(Waiting, usize)>,
}

impl AnswerBody {
    /// A small answer (an error, /health): not counted.
    pub fn uncounted(answer: Bytes) -> AnswerBody {
        AnswerBody {
            rest: answer,
            held: None,
        }
    }
}

impl Drop for AnswerBody {
    fn drop(&mut self) {
        if let Some((waiting, bytes)) = self.held.take() {
            waiting.bytes.fetch_sub(bytes, Ordering::AcqRel);
        }
    }
}

impl hyper::body::Body for AnswerBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.rest.is_empty() {
            return Poll::Ready(None);
        }
        let size = self.rest.len().min(PIECE);
        Poll::Ready(Some(Ok(Frame::data(self.rest.split_to(size)))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.rest.len() as u64)
    }
}

/// At most this many bytes of an answer wait unsent in a connection's socket. Without it, Linux
/// reports a socket writable again only once a third of its send buffer is free, and that
/// buffer grows to 4 MiB: a client reading steadily but slowly would show no progress for
/// longer than the deadline and be cut off. With it, every few KiB the client takes let the
/// next write through. (It also keeps what waits for a slow client here, counted.)
const UNSENT_IN_SOCKET: libc::c_int = 32 << 10;

/// Gives an accepted connection's socket the bound on unsent bytes its deadline relies on.
pub fn limit_unsent(stream: &tokio::net::TcpStream) {
    use std::os::fd::AsRawFd;
    // SAFETY: setsockopt on a socket this process owns, reading a c_int that outlives the call.
    // Failing leaves the kernel's default: slow readers may then be cut off sooner.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NOTSENT_LOWAT,
            (&UNSENT_IN_SOCKET as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

const STALLED: &str = "the client took no byte of its answer in time";

/// Whether a connection ended because its client took no byte of its answer in time.
pub fn stalled(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::TimedOut && e.to_string() == STALLED)
        {
            return true;
        }
        cause = e.source();
    }
    false
}

/// A connection's socket whose writes fail once they have made no progress for `limit`.
pub struct WriteDeadline<S> {
    inner: S,
    limit: Duration,
    /// Armed while a write waits for the client to read.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<S> WriteDeadline<S> {
    pub fn new(inner: S, limit: Duration) -> Self {
        WriteDeadline {
            inner,
            limit,
            stalled: None,
        }
    }

    /// The inner write's outcome, or an error once it has waited past the limit.
    fn check<T>(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let limit = self.limit;
        let stalled = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, STALLED))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.check(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.check(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.check(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
