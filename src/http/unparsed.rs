//! JSON answers for the requests hyper answers itself. A request it cannot parse (a garbage
//! request line, a malformed header or `Content-Length`, headers over the buffer, a URI too
//! long) never reaches a handler: hyper writes a bodiless 400, 431 or 414 and closes the
//! connection. The API promises a JSON error with a `kind` for every bad request, and
//! `invalid_request` is a 400, so each connection's socket is wrapped: an answer that is
//! exactly such a head (one of those status lines, `content-length: 0`, nothing after the
//! head) becomes a 400 with the body of an `invalid_request` error that says which it was,
//! the headers every error has, and a log line. The service's own
//! answers never match: each error it writes has a body, and a body is JSON, where CR and LF
//! never appear raw.

use crate::error::{ApiError, ErrorKind};
use crate::fields;
use crate::logging;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// hyper's automatic answers (`on_error` of its HTTP/1 server role): status line, and what it
/// means.
const AUTOMATIC: [(&[u8], &str); 3] = [
    (
        b"HTTP/1.1 400 Bad Request\r\n",
        "the request is not valid HTTP/1.1: its request line, a header or its framing is malformed",
    ),
    (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
        "the request's headers are too large or too many",
    ),
    (b"HTTP/1.1 414 URI Too Long\r\n", "the request's URI is too long"),
];

/// What every rewritten answer is: `invalid_request`'s status.
const INVALID_REQUEST: &[u8] = b"HTTP/1.1 400 Bad Request\r\n";

/// A connection's socket whose automatic answers get JSON bodies; `request_id` names each.
pub struct JsonForUnparsed<S, F> {
    inner: S,
    request_id: F,
    /// A rewritten answer, and how much of it the socket has taken.
    pending: Vec<u8>,
    written: usize,
}

impl<S, F: Fn() -> String> JsonForUnparsed<S, F> {
    pub fn new(inner: S, request_id: F) -> Self {
        JsonForUnparsed {
            inner,
            request_id,
            pending: Vec::new(),
            written: 0,
        }
    }

    /// `head` as an answer with a JSON body, if it is one of hyper's automatic answers.
    fn rewrite(&self, head: &[u8]) -> Option<Vec<u8>> {
        let (status_line, message) = AUTOMATIC.iter().find(|(line, _)| head.starts_with(line))?;
        let headers = head[status_line.len()..].strip_suffix(b"\r\n\r\n")?;
        let headers: Vec<&[u8]> = headers
            .split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .collect();
        if !headers
            .iter()
            .any(|line| line.eq_ignore_ascii_case(b"content-length: 0"))
        {
            return None;
        }
        let request_id = (self.request_id)();
        let body = ApiError::new(ErrorKind::InvalidRequest, *message).body().to_string();
        logging::info(
            "request",
            fields! {"request_id" => request_id.as_str(), "status" => 400, "kind" => ErrorKind::InvalidRequest.as_str(), "error" => *message},
        );
        let mut answer = Vec::with_capacity(head.len() + body.len() + 128);
        answer.extend_from_slice(INVALID_REQUEST);
        for line in headers {
            if line.eq_ignore_ascii_case(b"content-length: 0") {
                answer.extend_from_slice(format!("content-length: {}", body.len()).as_bytes());
            } else {
                answer.extend_from_slice(line);
            }
            answer.extend_from_slice(b"\r\n");
        }
        answer.extend_from_slice(b"content-type: application/json\r\ncache-control: no-store\r\n");
        answer.extend_from_slice(format!("x-request-id: {request_id}\r\n\r\n").as_bytes());
        answer.extend_from_slice(body.as_bytes());
        Some(answer)
    }
}

impl<S: AsyncWrite + Unpin, F: Fn() -> String + Unpin> JsonForUnparsed<S, F> {
    /// Writes what is left of a rewritten answer.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.pending.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }

    /// Takes `head` whole if it is an automatic answer (written from then on as the rewritten
    /// one: by this call as far as the socket takes it, the rest by the next flush).
    fn take_automatic(&mut self, cx: &mut Context<'_>, head: &[u8]) -> Option<Poll<io::Result<usize>>> {
        self.pending = self.rewrite(head)?;
        Some(match self.poll_pending(cx) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            _ => Poll::Ready(Ok(head.len())),
        })
    }
}

impl<S: AsyncRead + Unpin, F: Unpin> AsyncRead for JsonForUnparsed<S, F> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin, F: Fn() -> String + Unpin> AsyncWrite for JsonForUnparsed<S, F> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        if let Some(taken) = this.take_automatic(cx, buf) {
            return taken;
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        let mut parts = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(head), None) = (parts.next(), parts.next()) {
            if let Some(taken) = this.take_automatic(cx, head) {
                return taken;
            }
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use tokio::io::AsyncWriteExt;

    async fn written(chunks: &[&[u8]]) -> Vec<u8> {
        let mut socket = JsonForUnparsed::new(Vec::new(), || "id-1".to_string());
        for chunk in chunks {
            socket.write_all(chunk).await.unwrap();
        }
        socket.flush().await.unwrap();
        socket.inner
    }

    fn split(answer: &[u8]) -> (String, Value) {
        let text = String::from_utf8(answer.to_vec()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(length, body.len(), "{text}");
        (head.to_string(), serde_json::from_str(body).unwrap())
    }

    #[tokio::test]
    async fn automatic_answers_get_a_json_error_with_a_kind() {
        for (status, says) in [
            ("400 Bad Request", "not valid HTTP/1.1"),
            ("431 Request Header Fields Too Large", "headers"),
            ("414 URI Too Long", "URI"),
        ] {
            let head = format!("HTTP/1.1 {status}\r\nconnection: close\r\ncontent-length: 0\r\ndate: Thu, 03 Dec 2026 06:09:07 GMT\r\n\r\n");
            let (head, body) = split(&written(&[head.as_bytes()]).await);
            assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
            assert!(body["error"].as_str().unwrap().contains(says), "{body}");
            for header in [
                "connection: close",
                "date: Thu, 03 Dec 2026 06:09:07 GMT",
                "content-type: application/json",
                "cache-control: no-store",
                "x-request-id: id-1",
            ] {
                assert!(head.lines().any(|l| l == header), "{header} missing: {head}");
            }
            assert_eq!(body["kind"], "invalid_request");
            assert!(body["error"].as_str().unwrap().len() > 10, "{body}");
        }
    }

    #[tokio::test]
    async fn the_services_own_answers_pass_unchanged() {
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 43\r\n\r\n";
        let body = br#"{"error":"\"script\" is empty","kind":"x"}"#;
        let empty_ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        // A body chunk that starts like a head (it cannot in practice: JSON never has raw CRs).
        let lookalike = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\nmore";
        for chunks in [vec![&ours[..], &body[..]], vec![&empty_ok[..]], vec![&lookalike[..]]] {
            assert_eq!(written(&chunks).await, chunks.concat());
        }
    }

    #[tokio::test]
    async fn a_socket_taking_a_few_bytes_at_a_time_gets_the_whole_answer() {
        let (client, mut server) = tokio::io::duplex(7);
        let mut socket = JsonForUnparsed::new(client, || "id-2".to_string());
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut server, &mut all)
                .await
                .unwrap();
            all
        });
        let head = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        let slices = [IoSlice::new(head), IoSlice::new(b"")];
        let taken = socket.write_vectored(&slices).await.unwrap();
        assert_eq!(taken, head.len());
        socket.shutdown().await.unwrap();
        drop(socket);
        let (head, body) = split(&reader.await.unwrap());
        assert!(head.contains("x-request-id: id-2"), "{head}");
        assert_eq!(body["kind"], "invalid_request");
    }
}
