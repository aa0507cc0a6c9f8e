//! scripts/verify-deployment.sh (the gate cloudbuild.yaml runs after each deployment) against
//! the real service: it passes where the isolation is what is required, and fails, saying why,
//! against a service forced to a weaker rung.

use crate::common;

use common::{repo, Server};
use std::path::PathBuf;
use std::process::{Command, Output};

fn verify(server: &Server, args: &[&str]) -> (Output, String) {
    let output = Command::new(repo().join("scripts/verify-deployment.sh"))
        .arg(format!("http://127.0.0.1:{}", server.port))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run scripts/verify-deployment.sh: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output, text)
}

#[test]
fn passes_against_the_service_as_it_runs_here() {
    let server = Server::start();
    let (output, text) = verify(&server, &["--require", "user_namespace,cgroup,seccomp"]);
    assert!(output.status.success(), "{text}");
    for probe in ["result shape", "uid", "network", "read-only root", "memory limit"] {
        assert!(
            text.contains(&format!("PASS {probe}:")),
            "no passing {probe} probe in:\n{text}"
        );
    }
    assert!(!text.contains("FAIL"), "{text}");
}

#[test]
fn fails_against_a_service_weaker_than_required() {
    let server = Server::start_with(&[("SANDBOX_USERNS", "off")]);
    let (output, text) = verify(&server, &["--require", "user_namespace"]);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("FAIL requires user_namespace: /health reports it missing"),
        "the failure does not say why:\n{text}"
    );
    // What it does have still passes: only the requirement is missing.
    let (output, text) = verify(&server, &["--require", "cgroup,seccomp"]);
    assert!(output.status.success(), "{text}");
}

#[test]
fn sends_the_token_and_fails_without_it() {
    let server = Server::start_with(&[("API_TOKEN", "s3cret-token")]);
    let (output, text) = verify(&server, &["--token", "s3cret-token"]);
    assert!(output.status.success(), "{text}");
    let (output, text) = verify(&server, &[]);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("FAIL"), "{text}");
}

#[test]
fn refuses_an_unknown_requirement() {
    let server = Server::start();
    let (output, text) = verify(&server, &["--require", "user_namespace,gvisor"]);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.contains("unknown --require gvisor"), "{text}");
}

// ---- cloudbuild.yaml's verify step, run as Cloud Build would, with a stand-in gcloud ----

/// The `verify` step's bash script from cloudbuild.yaml, with the substitutions' defaults
/// applied (`$$` is a literal `$`), and `_REQUIRE_ISOLATION`'s default.
fn verify_step() -> (String, String) {
    let tools_python = repo().join(".sandbox/tools/bin/python3");
    assert!(
        tools_python.exists(),
        "the test tools are missing: run ./scripts/prepare-tools.sh (or `make test`)"
    );
    let script = "import json, sys\nfrom ruamel.yaml import YAML\nwith open(sys.argv[1]) as f:\n    json.dump(YAML(typ='safe').load(f), sys.stdout)\n";
    let output = Command::new(tools_python)
        .arg("-c")
        .arg(script)
        .arg(repo().join("cloudbuild.yaml"))
        .output()
        .expect("cannot run the tools' python3");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let build: serde_json::Value = serde_json::from_slice(&output.stdout).expect("cloudbuild.yaml as JSON");
    let defaults = build["substitutions"].as_object().expect("substitutions");
    let steps = build["steps"].as_array().expect("steps");
    let ids: Vec<&str> = steps.iter().filter_map(|s| s["id"].as_str()).collect();
    let position = |id: &str| ids.iter().position(|i| *i == id);
    assert!(
        position("verify") > position("deploy") && position("deploy").is_some(),
        "the verify step must come after the deploy step: {ids:?}"
    );
    let step = &steps[position("verify").unwrap()];
    assert_eq!(step["entrypoint"], "bash");
    let args: Vec<&str> = step["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert_eq!(args[0], "-c");
    let mut text = args[1].replace("$$", "\u{0}");
    for (name, value) in defaults {
        text = text.replace(&format!("${{{name}}}"), value.as_str().unwrap());
    }
    assert!(!text.contains('$'), "a substitution without a default: {text}");
    let required = defaults["_REQUIRE_ISOLATION"]
        .as_str()
        .expect("_REQUIRE_ISOLATION has a default");
    (text.replace('\u{0}', "$"), required.to_string())
}

/// Runs the verify step against `server` in a scratch workspace, with a `gcloud` that answers
/// the service's URL and an identity token, and records what else it is asked to do.
fn run_verify_step(server: &Server, previous_revision: &str, name: &str) -> (Output, String, String) {
    let (script, _) = verify_step();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("verify-step-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::os::unix::fs::symlink(repo().join("scripts"), dir.join("scripts")).unwrap();
    std::fs::write(dir.join("previous-revision"), previous_revision).unwrap();
    let gcloud = format!(
        "#!/bin/sh\ncase \"$*\" in\n\
         'run services describe python-executor --region=europe-west1 --format=value(status.url)') echo http://127.0.0.1:{port} ;;\n\
         'auth print-identity-token --audiences=http://127.0.0.1:{port}') echo identity-token ;;\n\
         *) echo \"$*\" >> '{calls}' ;;\nesac\n",
        port = server.port,
        calls = dir.join("calls").display()
    );
    std::fs::write(dir.join("bin/gcloud"), gcloud).unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(dir.join("bin/gcloud"))
        .status()
        .unwrap();
    let output = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(&dir)
        .env(
            "PATH",
            format!(
                "{}:{}",
                dir.join("bin").display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .output()
        .expect("cannot run bash");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let calls = std::fs::read_to_string(dir.join("calls")).unwrap_or_default();
    (output, text, calls)
}

#[test]
fn cloudbuild_verify_step_passes_a_deployment_as_strong_as_required() {
    let (_, required) = verify_step();
    assert_eq!(
        required, "user_namespace,cgroup,seccomp",
        "the default asks for everything"
    );
    // API_TOKEN set to the identity token: the step must send it.
    let server = Server::start_with(&[("API_TOKEN", "identity-token")]);
    let (output, text, calls) = run_verify_step(&server, "python-executor-00007-abc", "strong");
    assert!(output.status.success(), "{text}");
    assert!(text.contains("verify-deployment: OK"), "{text}");
    assert_eq!(calls, "", "a passing deployment keeps its traffic");
}

#[test]
fn cloudbuild_verify_step_fails_the_build_and_routes_traffic_back_when_weaker() {
    let server = Server::start_with(&[("API_TOKEN", "identity-token"), ("SANDBOX_USERNS", "off")]);
    let (output, text, calls) = run_verify_step(&server, "python-executor-00007-abc", "weak");
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("FAIL requires user_namespace"), "{text}");
    assert_eq!(
        calls.trim(),
        "run services update-traffic python-executor --region=europe-west1 \
         --to-revisions=python-executor-00007-abc=100 --quiet"
    );
}
