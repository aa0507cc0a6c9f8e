//! python-executor: runs untrusted Python scripts in an nsjail sandbox behind a small HTTP API.
//!
//! Layers, each importing only from those below it:
//! `app` (start-up, capacity, shutdown) → `http` (routing, body → job, /health) → `exec`
//! (admit → jail → run → answer) → `pool` and `jail` (the launcher seam, nsjail, the runner
//! protocol, the probe, cgroups); `validation` checks scripts for `http`; `config`, `error` and
//! `logging` are at the bottom.

pub mod app;
pub mod config;
pub mod error;
pub mod exec;
pub mod http;
pub mod jail;
pub mod logging;
pub mod pool;
pub mod validation;
