//! Before a body is parsed: the bearer token, the content type, and the body itself, read
//! with a cap on its size and a deadline.

use crate::config::Settings;
use crate::error::{ApiError, ErrorKind};
use http_body_util::BodyExt;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap};
use hyper::Request;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How much of an over-cap body is read and discarded beside the 413, so that a client that
/// writes its whole body before reading (urllib, requests) reads the answer instead of a
/// broken pipe; a body declared bigger than this is refused unread.
const DRAIN_BYTES: u64 = 32 << 20;
const DRAIN_TIME: Duration = Duration::from_secs(5);

pub fn authorize(settings: &Settings, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &settings.api_token else {
        return Ok(());
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        // The scheme is case-insensitive (RFC 9110, 11.1).
        .and_then(|v| {
            v.split_once(' ')
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("Bearer"))
        })
        .map_or("", |(_, token)| token);
    if constant_time_eq(presented.trim().as_bytes(), token.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::new(ErrorKind::Unauthorized, "missing or wrong bearer token"))
    }
}

/// Compares without an early exit, so timing does not reveal how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut difference = u8::from(a.len() != b.len());
    for i in 0..b.len() {
        let x = a.get(i).copied().unwrap_or(0);
        difference |= x ^ b[i];
    }
    std::hint::black_box(difference) == 0
}

/// The body must be JSON as sent: no other media type, and no content coding (a gzipped body
/// would otherwise be read as broken JSON).
pub fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    for coding in headers.get_all(header::CONTENT_ENCODING) {
        let coding = String::from_utf8_lossy(coding.as_bytes());
        if coding
            .split(',')
            .any(|c| !c.trim().eq_ignore_ascii_case("identity") && !c.trim().is_empty())
        {
            return Err(ApiError::new(
                ErrorKind::UnsupportedMediaType,
                format!(
                    "Content-Encoding {:?} is not supported: send the JSON body uncompressed",
                    coding.trim()
                ),
            ));
        }
    }
    // hyper decodes `chunked` and leaves any other transfer coding (`gzip, chunked`) on the body.
    for coding in headers.get_all(header::TRANSFER_ENCODING) {
        let coding = String::from_utf8_lossy(coding.as_bytes());
        if coding.split(',').any(|c| !c.trim().eq_ignore_ascii_case("chunked")) {
            return Err(ApiError::new(
                ErrorKind::UnsupportedMediaType,
                format!(
                    "Transfer-Encoding {:?} is not supported: send the JSON body chunked or with a Content-Length",
                    coding.trim()
                ),
            ));
        }
    }
    let mut types = headers.get_all(header::CONTENT_TYPE).iter();
    let Some(value) = types.next() else {
        return Ok(());
    };
    if types.next().is_some() {
        return Err(ApiError::new(
            ErrorKind::UnsupportedMediaType,
            "Content-Type must be given once, as application/json",
        ));
    }
    let essence = value
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json" {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorKind::UnsupportedMediaType,
            "Content-Type must be application/json",
        ))
    }
}

/// The memory all requests' bodies may take at once: as many full bodies as can be running or
/// waiting for a slot, but not over `MAX_BUDGET`. Each request holds the bytes it has sent,
/// from the first read to its answer, so a flood of uploads cannot grow the service without
/// bound; and only those: a stalled upload that declared a big body and sent a byte holds a
/// byte, not its declared length (32 of those would otherwise shut every client out).
pub struct BodyBudget {
    bytes: Arc<Semaphore>,
}

/// Above this many bytes of bodies at once, requests are refused (429) as they arrive.
const MAX_BUDGET: usize = 64 << 20;

impl BodyBudget {
    pub fn new(settings: &Settings, slots: usize) -> BodyBudget {
        let full = (slots + settings.queue_limit).saturating_mul(settings.max_body_bytes);
        let total = full.min(MAX_BUDGET).max(settings.max_body_bytes);
        BodyBudget {
            bytes: Arc::new(Semaphore::new(total)),
        }
    }

    /// Room for `more` bytes of a body, added to what it holds, at once or never: waiting
    /// would let a few stalled uploads hold up every other request.
    fn take(&self, held: &mut Option<OwnedSemaphorePermit>, more: usize) -> Result<(), ApiError> {
        // A frame is at most the body cap, at most 1 GiB (config): well within u32.
        let more = u32::try_from(more).unwrap_or(u32::MAX);
        let permit = self.bytes.clone().try_acquire_many_owned(more).map_err(|_| {
            let mut refused = ApiError::overloaded(Duration::from_secs(1));
            refused.message = "too many request bodies are arriving at once; retry later".into();
            refused
        })?;
        match held {
            Some(held) => held.merge(permit),
            None => *held = Some(permit),
        }
        Ok(())
    }
}

/// A body read whole, and its room in the budget (held until the answer).
pub struct ReadBody {
    pub bytes: Bytes,
    pub room: Option<OwnedSemaphorePermit>,
}

/// Whether a body refused unread is read and dropped beside the answer. A client that waits
/// for `100 Continue` sends nothing more: there is nothing to drain.
fn drainable(headers: &HeaderMap) -> bool {
    let expects_continue = headers
        .get(header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    !expects_continue && declared_length(headers).is_none_or(|n| n <= DRAIN_BYTES)
}

/// A request answered without its body (401, 404, 405, 415, ...): the body is drained beside
/// the answer, so that a client that writes it whole before reading gets the answer.
pub fn refuse_unread(request: Request<Incoming>, error: ApiError) -> ApiError {
    if drainable(request.headers()) {
        tokio::spawn(drain(request.into_body()));
    }
    error
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

pub async fn read_body(
    settings: &Settings,
    budget: &BodyBudget,
    request: Request<Incoming>,
) -> Result<ReadBody, ApiError> {
    let limit = settings.max_body_bytes;
    let too_large = || {
        ApiError::new(
            ErrorKind::PayloadTooLarge,
            format!("the request body is over the {limit}-byte limit"),
        )
        .with("limit_bytes", limit)
    };
    let declared = declared_length(request.headers());
    let drainable = drainable(request.headers());
    let mut body = request.into_body();
    if declared.is_some_and(|n| n > limit as u64) {
        if drainable {
            tokio::spawn(drain(body));
        }
        return Err(too_large());
    }
    let mut room = None;
    let reading = async {
        // Sized once (untouched capacity takes no memory): growing by doubling would hold up
        // to twice the body.
        let mut bytes = Vec::with_capacity(declared.map_or(0, |n| n as usize));
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame.map_err(|_| Refused::Unreadable)?.into_data() else {
                continue;
            };
            if bytes.len() + data.len() > limit {
                return Err(Refused::TooLarge);
            }
            budget.take(&mut room, data.len()).map_err(Refused::Overloaded)?;
            bytes.extend_from_slice(&data);
        }
        Ok(Bytes::from(bytes))
    };
    let refused = match tokio::time::timeout(settings.body_read_timeout, reading).await {
        Ok(Ok(bytes)) => return Ok(ReadBody { bytes, room }),
        Err(_) => {
            return Err(ApiError::new(
                ErrorKind::InvalidRequest,
                "the request body did not arrive in time",
            ))
        }
        Ok(Err(refused)) => refused,
    };
    // Refused mid-body: the rest is read and dropped beside the answer (it holds no room).
    if drainable && !matches!(refused, Refused::Unreadable) {
        tokio::spawn(drain(body));
    }
    Err(match refused {
        Refused::TooLarge => too_large(),
        Refused::Overloaded(error) => error,
        Refused::Unreadable => ApiError::new(ErrorKind::InvalidRequest, "the request body could not be read"),
    })
}

/// Why a body was not read whole, but for its deadline.
enum Refused {
    TooLarge,
    Overloaded(ApiError),
    Unreadable,
}

/// Reads and discards the rest of a body, up to DRAIN_BYTES and DRAIN_TIME, beside the answer
/// (hyper writes it meanwhile: a client that stalls gets it at once all the same).
async fn drain(mut body: Incoming) {
    let draining = async {
        let mut seen = 0u64;
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                seen += data.len() as u64;
                if seen > DRAIN_BYTES {
                    return;
                }
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, draining).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_exactly() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secreT", b"secret"));
        assert!(!constant_time_eq(b"secret1", b"secret"));
        assert!(!constant_time_eq(b"", b"secret"));
        assert!(!constant_time_eq(b"secre", b"secret"));
    }
}
