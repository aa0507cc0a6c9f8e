//! scripts/verify-deployment.sh (the gate cloudbuild.yaml runs after each deployment) against
//! the real service: it passes where the isolation is what is required, and fails, saying why,
//! against a service forced to a weaker rung.

mod common;

use common::{repo, Server};
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
        assert!(text.contains(&format!("PASS {probe}:")), "no passing {probe} probe in:\n{text}");
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
