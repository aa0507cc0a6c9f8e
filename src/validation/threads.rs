//! Where a script is validated, boundedly: small scripts right away on the async worker, bigger
//! ones on a thread of their own with a big stack, at most one such thread per CPU (parsing is
//! all CPU). Requests wait for one as they wait for a sandbox slot, as many and as long
//! (`QUEUE_LIMIT`, `QUEUE_TIMEOUT_SECONDS`): a burst of big scripts at an idle service is
//! parsed, not refused; past that, 429 `overloaded`.
//! A parser that panics, on either path, is answered 500 `internal` (its message logged),
//! never with a dropped connection.

use super::{validate, ScriptInfo};
use crate::error::{ApiError, ErrorKind};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Deeply nested code makes deeply recursive syntax trees: parse on a thread whose stack
/// cannot run out before the script-size cap does (only the pages touched are ever used).
const PARSER_STACK_BYTES: usize = 1 << 30;

/// Scripts up to this size are validated right away on the async worker: their syntax trees
/// cannot nest deep enough to exhaust its stack (`RUNTIME_STACK_BYTES`), and parsing them
/// takes microseconds.
const INLINE_LIMIT: usize = 16 * 1024;

/// What checks a script (`validation::validate`; tests put a faulty one in its place).
pub type ParseFn = fn(&str) -> Result<ScriptInfo, ApiError>;

pub struct ParserThreads {
    threads: Arc<Semaphore>,
    capacity: usize,
    waiting: Semaphore,
    waiting_limit: usize,
    wait: Duration,
    parse: ParseFn,
}

impl ParserThreads {
    /// One parser thread per CPU, running `validate`; up to `waiting_limit` requests wait for
    /// one, each for up to `wait`.
    pub fn per_cpu(waiting_limit: usize, wait: Duration) -> ParserThreads {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        ParserThreads::with_parser(cpus, waiting_limit, wait, validate)
    }

    pub fn with_parser(capacity: usize, waiting_limit: usize, wait: Duration, parse: ParseFn) -> ParserThreads {
        let capacity = capacity.max(1);
        ParserThreads {
            threads: Arc::new(Semaphore::new(capacity)),
            capacity,
            waiting: Semaphore::new(waiting_limit),
            waiting_limit,
            wait,
            parse,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Parser threads running now.
    pub fn in_use(&self) -> usize {
        self.capacity - self.threads.available_permits()
    }

    /// Requests waiting for a parser thread now.
    pub fn waiting(&self) -> usize {
        self.waiting_limit - self.waiting.available_permits()
    }

    /// Validates without blocking the async runtime or risking its stack.
    pub async fn validate(&self, script: String) -> Result<ScriptInfo, ApiError> {
        if script.len() <= INLINE_LIMIT {
            return guarded(self.parse, &script);
        }
        let permit = self.thread_permit().await?;
        let parse = self.parse;
        let thread = std::thread::Builder::new()
            .name("validate".into())
            .stack_size(PARSER_STACK_BYTES)
            .spawn(move || guarded(parse, &script));
        let Ok(thread) = thread else {
            return Err(ApiError::new(
                ErrorKind::Unavailable,
                "cannot start the validator; retry later",
            ));
        };
        // The permit goes back once the thread has ended, not merely answered: it counts
        // threads, even those of requests whose client went away meanwhile.
        let joined = tokio::task::spawn_blocking(move || {
            let outcome = thread.join();
            drop(permit);
            outcome
        })
        .await;
        match joined {
            Ok(Ok(outcome)) => outcome,
            _ => Err(ApiError::new(
                ErrorKind::Internal,
                "the validator thread ended without an answer",
            )),
        }
    }

    /// A parser thread's permit, waiting for one if all are taken.
    async fn thread_permit(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        if let Ok(permit) = self.threads.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let Ok(_waiting) = self.waiting.try_acquire() else {
            return Err(busy());
        };
        match tokio::time::timeout(self.wait, self.threads.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(busy()),
        }
    }
}

fn busy() -> ApiError {
    let mut error = ApiError::overloaded(Duration::from_secs(1));
    error.message = "every script validator is busy; retry later".into();
    error
}

/// `parse`, with a panic turned into an internal error that says what it was (for the log).
fn guarded(parse: ParseFn, script: &str) -> Result<ScriptInfo, ApiError> {
    catch_unwind(AssertUnwindSafe(|| parse(script))).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(ApiError::new(
            ErrorKind::Internal,
            format!("the validator panicked: {what}"),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn panicking(_: &str) -> Result<ScriptInfo, ApiError> {
        panic!("an injected parser fault")
    }

    fn big() -> String {
        format!("def main():\n    pass\n{}", "# padding\n".repeat(INLINE_LIMIT / 8))
    }

    #[tokio::test]
    async fn a_parser_panic_is_an_internal_error_on_both_paths() {
        let threads = ParserThreads::with_parser(1, 0, Duration::ZERO, panicking);
        for script in ["def main(): pass\n".to_string(), big()] {
            let error = threads.validate(script).await.unwrap_err();
            assert_eq!(error.kind, ErrorKind::Internal);
            assert!(error.message.contains("an injected parser fault"), "{}", error.message);
        }
        assert_eq!((threads.in_use(), threads.waiting()), (0, 0));
    }

    static RELEASE: AtomicBool = AtomicBool::new(false);

    fn held(_: &str) -> Result<ScriptInfo, ApiError> {
        while !RELEASE.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(1));
        }
        validate("def main(): pass\n")
    }

    #[tokio::test]
    async fn threads_are_bounded_waiters_too_and_both_are_counted() {
        const WAITING: usize = 3;
        let threads = Arc::new(ParserThreads::with_parser(1, WAITING, Duration::from_secs(30), held));
        let first = tokio::spawn({
            let threads = threads.clone();
            async move { threads.validate(big()).await.map(|_| ()) }
        });
        while threads.in_use() == 0 {
            tokio::task::yield_now().await;
        }
        let mut waiters = Vec::new();
        for _ in 0..WAITING {
            let threads = threads.clone();
            waiters.push(tokio::spawn(async move { threads.validate(big()).await.map(|_| ()) }));
        }
        while threads.waiting() < WAITING {
            tokio::task::yield_now().await;
        }
        assert_eq!(threads.in_use(), 1);
        let refused = threads.validate(big()).await.unwrap_err();
        assert_eq!(refused.kind, ErrorKind::Overloaded);
        assert!(refused.retry_after.is_some());
        RELEASE.store(true, Ordering::Release);
        first.await.unwrap().unwrap();
        for waiter in waiters {
            waiter.await.unwrap().unwrap();
        }
        assert_eq!((threads.in_use(), threads.waiting()), (0, 0));
    }
}
