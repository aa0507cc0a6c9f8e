//! One execution in a jail: hand over the request, wait for the report, the time limit or
//! an out-of-memory kill, and collect the output and what the cgroup counted.

use super::*;

impl NsjailJail {
    /// `Jail::run`: hands over the script and waits for the end.
    pub(super) async fn run_script(
        mut self,
        request: RunRequest<'_>,
        timeout: Duration,
        mut stop: watch::Receiver<bool>,
    ) -> Execution {
        let cap = self.output_cap;
        let (finished, finished_rx) = watch::channel(false);
        let (Some(stdout), Some(stderr)) = (self.stdout.take(), self.stderr.take()) else {
            return Execution {
                ending: Ending::Vanished {
                    exit_code: None,
                    signal: None,
                },
                stdout: Captured::default(),
                stderr: Captured::default(),
                accounting: Accounting::default(),
            };
        };
        let stdout = tokio::spawn(read_capped(stdout, cap, Some(finished_rx.clone())));
        let stderr = tokio::spawn(read_capped(stderr, cap, Some(finished_rx)));
        let started = Instant::now();
        let ends_at = tokio::time::Instant::from_std(started + timeout);
        if let Some(cgroup) = &self.cgroup {
            cgroup.reset_peak();
        }
        let cpu_before = self.cgroup.as_ref().and_then(|c| c.counters().cpu_usec);

        let mut stdin = self.stdin.take();
        let encoded = request.encode();
        let collecting = request.collect.is_some();
        let feeding = async move {
            if let Some(stdin) = stdin.as_mut() {
                // A jail that dies early closes its stdin: the ending says why, not this.
                let _ = stdin.write_all(&encoded).await;
                let _ = stdin.shutdown().await;
            }
            drop(stdin);
        };
        let result = &mut self.result;
        let reading = protocol::read_frame(result, request.result_limit_bytes + FRAME_OVERHEAD);
        // cgroup v1 has no memory.oom.group: an out-of-memory kill takes one process and the
        // rest of the jail carries on (or waits for it until the time limit). Watch for one and
        // end the whole jail then, as v2's memory.oom.group does.
        let cgroup = self.cgroup.as_ref();
        let oom_watch = async move {
            match cgroup {
                Some(cgroup) => loop {
                    tokio::time::sleep(OOM_POLL).await;
                    if cgroup.oom_killed() {
                        break;
                    }
                },
                None => std::future::pending().await,
            }
        };
        let stopped = async move {
            if stop.wait_for(|stop| *stop).await.is_err() {
                std::future::pending::<()>().await; // nobody can stop it any more
            }
        };
        let outcome = tokio::time::timeout_at(ends_at, async {
            tokio::select! {
                frame = async { tokio::join!(feeding, reading).1 } => Waited::Frame(frame),
                _ = oom_watch => Waited::OutOfMemory,
                _ = stopped => Waited::Stopped,
            }
        })
        .await;

        let ending = match outcome {
            Err(_) => Ending::TimedOut,
            Ok(Waited::OutOfMemory) => Ending::OutOfMemory,
            Ok(Waited::Stopped) => Ending::Stopped,
            Ok(Waited::Frame(Err(_))) => Ending::ResultTooLarge,
            // An out-of-memory kill anywhere ends the whole jail as `memory_limit`, also when
            // the runner reported before the watch above saw it (v1: a child killed just
            // before main returned).
            Ok(Waited::Frame(Ok(_))) if self.oom_killed() => Ending::OutOfMemory,
            Ok(Waited::Frame(Ok(frame))) => match protocol::parse_frame(&frame, collecting) {
                Ok(report) => Ending::Reported(report),
                Err(FrameError::Missing) => {
                    // The runner itself died: wait for nsjail to say how (a forked jail's
                    // runner is nobody's child here: no status).
                    let status = match &mut self.child {
                        Some(child) => tokio::time::timeout(deadline::DRAIN, child.wait()).await,
                        None => Ok(Err(io::Error::other("no status"))),
                    };
                    if self.oom_killed() {
                        Ending::OutOfMemory
                    } else {
                        match status {
                            Ok(Ok(status)) => Ending::Vanished {
                                exit_code: status.code(),
                                signal: status.signal(),
                            },
                            _ => Ending::Vanished {
                                exit_code: None,
                                signal: None,
                            },
                        }
                    }
                }
                Err(FrameError::Malformed(why)) => Ending::Corrupted(why),
                Err(FrameError::TooLarge) => Ending::ResultTooLarge,
                Err(FrameError::TooDeep) => Ending::ResultTooDeep,
            },
        };
        let reported = matches!(ending, Ending::Reported(_));
        if !reported || self.oom_killed() {
            // Whatever else happened (time limit, memory, a corrupted or oversized frame, a
            // vanished runner), nothing more is wanted from this jail: killing it now brings
            // its pipes to EOF instead of leaving a live script writing into them.
            self.kill();
        }
        if reported {
            // The runner reported after reaping every other process: what is in the pipes
            // is all there will be.
            let _ = finished.send(true);
        }
        // nsjail's exit and the cgroup's removal happen after the answer (on drop).
        let accounting = self.accounting(started, cpu_before);
        let (stdout, stderr) = collect(stdout, stderr, &finished, deadline::DRAIN).await;
        drop(self);
        Execution {
            ending,
            stdout,
            stderr,
            accounting,
        }
    }

    /// What the jail's cgroup counted since the script's hand-off (`cpu_before`).
    fn accounting(&self, started: Instant, cpu_before: Option<u64>) -> Accounting {
        let counters = self.cgroup.as_ref().map(JailCgroup::counters).unwrap_or_default();
        let cpu = match (cpu_before, counters.cpu_usec) {
            (Some(before), Some(after)) => Some(Duration::from_micros(after.saturating_sub(before))),
            _ => None,
        };
        Accounting {
            wall: started.elapsed(),
            cpu,
            peak_memory_bytes: counters.peak_memory_bytes,
        }
    }

    fn oom_killed(&self) -> bool {
        self.cgroup.as_ref().is_some_and(JailCgroup::oom_killed)
    }
}

/// What the wait for a report ended with, before the time limit.
enum Waited<F> {
    Frame(F),
    OutOfMemory,
    Stopped,
}
