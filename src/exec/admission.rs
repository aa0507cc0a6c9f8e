//! Admission control: at most `slots` executions at once, at most `queue_limit` requests
//! waiting for a slot, each for at most `queue_timeout`. Past that: 429 with Retry-After.

use crate::error::{ApiError, ErrorKind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

#[derive(Debug)]
pub struct Admission {
    slots: Arc<Semaphore>,
    capacity: usize,
    waiting: AtomicUsize,
    queue_limit: usize,
    queue_timeout: Duration,
}

/// Decrements the waiting count however the wait ends (admitted, timed out, or cancelled
/// because the client went away).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Admission {
    pub fn new(slots: usize, queue_limit: usize, queue_timeout: Duration) -> Admission {
        Admission {
            slots: Arc::new(Semaphore::new(slots)),
            capacity: slots,
            waiting: AtomicUsize::new(0),
            queue_limit,
            queue_timeout,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn in_use(&self) -> usize {
        self.capacity - self.slots.available_permits()
    }

    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// Waits for a slot, or says why not.
    pub async fn admit(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        match self.slots.clone().try_acquire_owned() {
            Ok(permit) => return Ok(permit),
            Err(TryAcquireError::Closed) => return Err(shutting_down()),
            Err(TryAcquireError::NoPermits) => {}
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.queue_limit {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(ApiError::overloaded(self.retry_after()));
        }
        let _waiting = Waiting(&self.waiting);
        match tokio::time::timeout(self.queue_timeout, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_closed)) => Err(shutting_down()),
            Err(_elapsed) => Err(ApiError::overloaded(self.retry_after())),
        }
    }

    /// No slot is given any more: the waiting requests and every later one are refused.
    pub fn close(&self) {
        self.slots.close();
    }

    fn retry_after(&self) -> Duration {
        Duration::from_secs(1 + (self.waiting() / self.capacity.max(1)) as u64)
    }
}

fn shutting_down() -> ApiError {
    ApiError::new(ErrorKind::Unavailable, "the service is shutting down; retry")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn full_queue_is_refused_at_once_and_a_freed_slot_is_reused() {
        let admission = Arc::new(Admission::new(1, 1, Duration::from_secs(5)));
        let first = admission.admit().await.unwrap();
        let waiter = {
            let admission = admission.clone();
            tokio::spawn(async move { admission.admit().await.map(|_| ()) })
        };
        while admission.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        let refused = admission.admit().await.unwrap_err();
        assert_eq!(refused.kind.as_str(), "overloaded");
        assert!(refused.retry_after.is_some());
        drop(first);
        waiter.await.unwrap().unwrap();
        assert_eq!(admission.waiting(), 0);
    }

    #[tokio::test]
    async fn closing_refuses_the_waiting_and_the_new_but_keeps_the_running() {
        let admission = Arc::new(Admission::new(1, 4, Duration::from_secs(5)));
        let running = admission.admit().await.unwrap();
        let waiter = {
            let admission = admission.clone();
            tokio::spawn(async move { admission.admit().await.map(|_| ()) })
        };
        while admission.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        admission.close();
        assert_eq!(waiter.await.unwrap().unwrap_err().kind.as_str(), "unavailable");
        drop(running);
        assert_eq!(admission.admit().await.unwrap_err().kind.as_str(), "unavailable");
        assert_eq!(admission.waiting(), 0);
    }

    #[tokio::test]
    async fn a_wait_that_runs_out_is_refused() {
        let admission = Admission::new(1, 4, Duration::from_millis(20));
        let _held = admission.admit().await.unwrap();
        let refused = admission.admit().await.unwrap_err();
        assert_eq!(refused.kind.as_str(), "overloaded");
        assert_eq!(admission.waiting(), 0);
    }
}
