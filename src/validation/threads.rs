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

/// The source being parsed on threads at once, in KiB. rustpython's syntax trees take 100 to
/// 280 bytes of the service's own memory per byte of source (a 1 MiB chain of unary minus
/// signs: 270 MB), outside every jail's limit: however many threads are free, bigger scripts
/// than this together wait, so that the service's memory stays within ~300 MB for parsing.
/// A single script bigger than this (`MAX_SCRIPT_BYTES` above 1 MiB) is parsed alone.
const PARSING_KIB: u32 = 1024;

/// What checks a script (`validation::validate`; tests put a faulty one in its place).
pub type ParseFn = fn(&str) -> Result<ScriptInfo, ApiError>;

pub struct ParserThreads {
    threads: Arc<Semaphore>,
    /// KiB of source being parsed (`PARSING_KIB`).
    parsing: Arc<Semaphore>,
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
            parsing: Arc::new(Semaphore::new(PARSING_KIB as usize)),
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
        let kib = u32::try_from(script.len().div_ceil(1024))
            .unwrap_or(u32::MAX)
            .min(PARSING_KIB);
        let permit = self.thread_permit(kib).await?;
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

    /// A parser thread's permit and room for `kib` of source, waiting for them if taken.
    async fn thread_permit(&self, kib: u32) -> Result<(OwnedSemaphorePermit, OwnedSemaphorePermit), ApiError> {
        if let (Ok(room), Ok(thread)) = (
            self.parsing.clone().try_acquire_many_owned(kib),
            self.threads.clone().try_acquire_owned(),
        ) {
            return Ok((room, thread));
        }
        let Ok(_waiting) = self.waiting.try_acquire() else {
            return Err(busy());
        };
        let both = async {
            let room = self.parsing.clone().acquire_many_owned(kib).await?;
            Ok::<_, tokio::sync::AcquireError>((room, self.threads.clone().acquire_owned().await?))
        };
        match tokio::time::timeout(self.wait, both).await {
            Ok(Ok(permits)) => Ok(permits),
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
    async fn big_scripts_together_wait_for_room_to_parse_whatever_threads_are_free() {
        static SEEN_AT_ONCE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        static NOW: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        fn counted(_: &str) -> Result<ScriptInfo, ApiError> {
            let now = NOW.fetch_add(1, Ordering::AcqRel) + 1;
            SEEN_AT_ONCE.fetch_max(now, Ordering::AcqRel);
            std::thread::sleep(Duration::from_millis(50));
            NOW.fetch_sub(1, Ordering::AcqRel);
            validate("def main(): pass\n")
        }
        let threads = Arc::new(ParserThreads::with_parser(4, 8, Duration::from_secs(30), counted));
        let half = PARSING_KIB as usize * 1024 * 6 / 10; // two do not fit at once
        let runs: Vec<_> = (0..3)
            .map(|_| {
                let threads = threads.clone();
                tokio::spawn(async move { threads.validate("#".repeat(half)).await.map(|_| ()) })
            })
            .collect();
        for run in runs {
            run.await.unwrap().unwrap();
        }
        assert_eq!(SEEN_AT_ONCE.load(Ordering::Acquire), 1);
        assert_eq!((threads.in_use(), threads.waiting()), (0, 0));
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
