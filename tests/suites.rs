//! Every integration suite, in one test binary: compiled and linked once instead of once per
//! suite (most of what `make test` spent compiling). One file per feature, as before; each
//! suite is a module, and `scripts/run-tests.sh` runs each on its own (`suites <name>::`), so
//! each suite still gets a process, and shared servers, of its own.

mod common;
#[path = "common/hostile.rs"]
mod hostile;

mod api;
mod contract;
mod data_in_out;
mod deploy;
mod hostile_budgets;
mod hostile_burst;
mod hostile_data;
mod hostile_escape;
mod hostile_exhaustion;
mod hostile_http;
mod hostile_runner;
mod hostile_secrets;
mod hostile_time;
mod jail_data;
mod jail_setup;
mod lifecycle;
mod pool;
mod python_behaviour;
mod runner_py;
mod validation_faults;
mod verify_deployment;
mod zygote;
