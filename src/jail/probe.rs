//! The start-up probe: finds the strongest isolation this host allows, proves it by running a
//! tiny script through it, and refuses to start if nothing works (fail closed).
//!
//! Order: cgroup v2, then v1, then rlimits only; within each, with a user namespace first.
//! `SANDBOX_USERNS` and `SANDBOX_CGROUP` force one choice (a forced choice that fails stops
//! start-up rather than falling back).

use crate::cgroup::Cgroups;
use crate::config::{CgroupChoice, Settings, UsernsChoice};
use crate::runner::{Report, RunRequest};
use crate::sandbox::{Ending, Flavour, Isolation, Jail, Sandbox};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PROBE_SCRIPT: &str =
    "import os, sys\n\ndef main():\n    return [sys.version.split()[0], os.getuid(), os.getgid()]\n";

/// What the probe found, for the logs and `/health`.
#[derive(Debug, Clone)]
pub struct ProbeReport {
    pub python_version: String,
    pub took: Duration,
    /// Why stronger configurations were passed over.
    pub skipped: Vec<String>,
}

/// What the probe found: the sandbox to use, a report, and (if `spare_lifetime` was given) a
/// ready warm jail started beside the probe's, for the pool: the first request need not wait
/// for a second jail to start. It is only handed out once the probe has proven its
/// configuration, and no script reaches it before.
pub type Probed = (Sandbox, ProbeReport, Option<Jail>);

pub async fn probe(settings: &Settings, spare_lifetime: Option<Duration>) -> Result<Probed, String> {
    let started = Instant::now();
    let mut skipped = Vec::new();
    let userns_options: &[bool] = match settings.userns {
        UsernsChoice::Auto => &[true, false],
        UsernsChoice::On => &[true],
        UsernsChoice::Off => &[false],
    };
    let cgroup_options: &[CgroupChoice] = match settings.cgroup {
        CgroupChoice::Auto => &[CgroupChoice::V2, CgroupChoice::V1, CgroupChoice::None],
        forced => std::slice::from_ref(match forced {
            CgroupChoice::V2 => &CgroupChoice::V2,
            CgroupChoice::V1 => &CgroupChoice::V1,
            _ => &CgroupChoice::None,
        }),
    };
    for cgroup_choice in cgroup_options {
        let cgroups = match cgroup_choice {
            CgroupChoice::V2 => Cgroups::setup_v2().map(Some),
            CgroupChoice::V1 => Cgroups::setup_v1().map(Some),
            _ => Ok(None),
        };
        let cgroups = match cgroups {
            Ok(c) => c.map(Arc::new),
            Err(why) => {
                skipped.push(format!("cgroup {}: {why}", name(*cgroup_choice)));
                continue;
            }
        };
        for &user_namespace in userns_options {
            let isolation = Isolation {
                user_namespace,
                cgroups: cgroups.clone(),
            };
            let label = isolation.describe();
            let sandbox = Sandbox::new(
                &settings.nsjail_path,
                &settings.nsjail_config,
                &settings.sandbox_python,
                isolation,
                settings.limits,
            )?;
            match try_sandbox(&sandbox, spare_lifetime).await {
                Ok((python_version, spare)) => {
                    let took = started.elapsed();
                    return Ok((
                        sandbox,
                        ProbeReport {
                            python_version,
                            took,
                            skipped,
                        },
                        spare,
                    ));
                }
                Err(why) => skipped.push(format!("{label}: {why}")),
            }
        }
        if let Some(cgroups) = cgroups {
            cgroups.remove();
        }
    }
    Err(format!("no working sandbox configuration: {}", skipped.join("; ")))
}

fn name(choice: CgroupChoice) -> &'static str {
    match choice {
        CgroupChoice::V2 => "v2",
        CgroupChoice::V1 => "v1",
        _ => "none",
    }
}

/// Runs the probe script; returns the sandbox Python's version and the spare jail, if asked.
async fn try_sandbox(sandbox: &Sandbox, spare_lifetime: Option<Duration>) -> Result<(String, Option<Jail>), String> {
    let memory = sandbox.limits.memory_bytes;
    // Started first so that it loads while the probe runs; dropped (killed) if the probe fails.
    let spare = spare_lifetime.and_then(|lifetime| sandbox.spawn(Flavour::Plain, lifetime, true, memory).ok());
    let version = run_probe(sandbox).await?;
    let spare = match spare {
        Some(mut jail) => jail.wait_ready(Duration::from_secs(15)).await.ok().map(|()| jail),
        None => None,
    };
    Ok((version, spare))
}

async fn run_probe(sandbox: &Sandbox) -> Result<String, String> {
    let mut jail = sandbox
        .spawn(
            Flavour::Plain,
            Duration::from_secs(20),
            false,
            sandbox.limits.memory_bytes,
        )
        .map_err(|e| e.message)?;
    jail.wait_ready(Duration::from_secs(15))
        .await
        .map_err(|e| format!("{}: {}", e.message, e.nsjail_log.trim()))?;
    let request = RunRequest {
        script: PROBE_SCRIPT,
        result_limit_bytes: 4096,
    };
    let execution = jail.execute(request, Duration::from_secs(15)).await;
    match execution.ending {
        Ending::Reported(Report::Value(raw)) => {
            let value: (String, u32, u32) =
                serde_json::from_str(raw.get()).map_err(|e| format!("unexpected probe answer: {e}"))?;
            if value.1 == 0 || value.2 == 0 {
                return Err("the jail ran the script as root".into());
            }
            Ok(value.0)
        }
        other => Err(format!(
            "probe script failed: {other:?}; stderr: {}",
            execution.stderr.text().chars().take(500).collect::<String>()
        )),
    }
}
