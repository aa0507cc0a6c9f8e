//! The start-up probe: finds the strongest isolation this host allows, proves it by running a
//! tiny script through it, and refuses to start if nothing works (fail closed).
//!
//! Order: cgroup v2, then v1, then rlimits only; within each, with a user namespace first.
//! `SANDBOX_USERNS` and `SANDBOX_CGROUP` force one choice (a forced choice that fails stops
//! start-up rather than falling back).

use crate::config::{CgroupChoice, Settings, UsernsChoice};
use crate::jail::cgroup::Cgroups;
use crate::jail::nsjail::Nsjail;
use crate::jail::protocol::{self, Report, RunRequest};
use crate::jail::{deadline, Ending, Isolation, Jail, JailSpec, Launcher};
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Says which Python runs scripts, as which ids, and which packages a script can import
/// (from the installed distributions' `name-version.dist-info` directories: cheaper at start-up
/// than importlib.metadata); and compiles the runner it is given as input, for every later jail
/// to load instead of compiling it again (its code, marshalled by this very interpreter, in
/// base64).
const PROBE_SCRIPT: &str = r#"import binascii, marshal, os, sys

def main(runner):
    # "<string>": the filename `-c` gives the runner's source. Without its docstrings
    # (optimize=2; it has no assert): a command line's argument holds 128 KiB at most.
    code = binascii.b2a_base64(marshal.dumps(compile(runner, "<string>", "exec", optimize=2)), newline=False).decode()
    packages = {}
    for directory in sys.path:
        try:
            entries = os.listdir(directory)
        except OSError:
            continue
        for entry in entries:
            stem = entry[: -len(".dist-info")]
            if entry.endswith(".dist-info") and stem.count("-") == 1:
                name, version = stem.split("-")
                packages.setdefault(name.lower().replace("_", "-"), version)
    return [sys.version.split()[0], os.getuid(), os.getgid(), packages, code]
"#;

/// What the probe answers at most (the compiled runner is most of it).
const PROBE_RESULT_BYTES: usize = 256 * 1024;

/// What the probe found, for the logs and `/health`.
#[derive(Debug, Clone)]
pub struct ProbeReport {
    pub python: SandboxPython,
    pub took: Duration,
    /// Why stronger configurations were passed over.
    pub skipped: Vec<String>,
}

/// Finds the launcher to use (the strongest isolation that works here), or says why none does.
pub async fn probe(settings: &Settings) -> Result<(Nsjail, ProbeReport), String> {
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
            let launcher = Nsjail::new(
                &settings.nsjail_path,
                &settings.nsjail_config,
                &settings.sandbox_python,
                isolation,
                settings.limits,
                settings.jail_uid_base,
            )?;
            let mut launcher = launcher;
            match run_probe(&launcher, settings.limits.memory_bytes).await {
                Ok((python, compiled_runner)) => {
                    if !launcher.use_compiled_runner(compiled_runner) {
                        crate::logging::warning(
                            "the compiled runner is not used: every jail compiles the runner's source",
                            crate::fields! {},
                        );
                    }
                    let took = started.elapsed();
                    if !skipped.is_empty() {
                        // Weaker isolation than this host could give with the right set-up:
                        // say which stronger configurations failed, and why.
                        crate::logging::warning(
                            "isolation: fell back to a weaker configuration",
                            crate::fields! {"using" => label, "skipped" => skipped.clone()},
                        );
                    }
                    let report = ProbeReport { python, took, skipped };
                    return Ok((launcher, report));
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

/// The sandbox's Python, as a script sees it.
#[derive(Debug, Clone, Default)]
pub struct SandboxPython {
    pub version: String,
    /// Importable third-party packages and their versions.
    pub packages: BTreeMap<String, String>,
}

/// Runs the probe script in a jail; returns what it found of the sandbox's Python, and the
/// runner compiled by it.
async fn run_probe(launcher: &Nsjail, memory_bytes: u64) -> Result<(SandboxPython, String), String> {
    let jail = launcher
        .start(JailSpec::probe(memory_bytes))
        .await
        .map_err(|e| format!("{}: {}", e.message, e.log.trim()))?;
    let mut request = RunRequest::new(PROBE_SCRIPT, PROBE_RESULT_BYTES);
    let runner = serde_json::to_string(protocol::RUNNER_SOURCE).map_err(|e| e.to_string())?;
    request.input = Some(RawValue::from_string(runner).map_err(|e| e.to_string())?);
    let execution = jail
        .run(request, deadline::PROBE_RUN, crate::jail::never_stopped())
        .await;
    match execution.ending {
        Ending::Reported(Report::Value { value: raw, .. }) => {
            type Answer = (String, u32, u32, BTreeMap<String, String>, String);
            let (python, uid, gid, packages, compiled_runner): Answer =
                serde_json::from_str(raw.get()).map_err(|e| format!("unexpected probe answer: {e}"))?;
            if !launcher.is_jail_identity(uid, gid) {
                return Err(format!(
                    "the jail ran the script as {uid}:{gid}, not as the jail's own user"
                ));
            }
            let python = SandboxPython {
                version: python,
                packages,
            };
            Ok((python, compiled_runner))
        }
        other => Err(format!(
            "probe script failed: {other:?}; stderr: {}",
            execution.stderr.text().chars().take(500).collect::<String>()
        )),
    }
}
