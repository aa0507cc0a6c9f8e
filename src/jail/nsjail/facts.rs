//! What nsjail.cfg puts in force, read once at start-up for `/health`.

use std::path::Path;

/// What nsjail.cfg puts in force, as far as `/health` states it.
#[derive(Debug, Clone)]
pub(super) struct ConfigFacts {
    /// The namespaces the configuration asks for (the user namespace is the probe's choice).
    pub(super) namespaces: Vec<&'static str>,
    pub(super) seccomp: bool,
    /// The jail's PATH (`envar: "PATH=..."`), if the configuration sets one.
    pub(super) path: Option<String>,
}

impl ConfigFacts {
    /// Reads nsjail's text configuration: `clone_new*: true|false` and any seccomp policy.
    pub(super) fn read(config: &Path) -> Result<ConfigFacts, String> {
        let text = std::fs::read_to_string(config).map_err(|e| format!("NSJAIL_CONFIG: {e}"))?;
        let setting = |key: &str| {
            text.lines()
                .map(str::trim)
                .filter_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
                .last()
                .map(|v| v.trim() == "true")
        };
        // nsjail's defaults: every one of these namespaces is on unless the file turns it off.
        let namespaces = [
            ("mount", "clone_newns"),
            ("pid", "clone_newpid"),
            ("network", "clone_newnet"),
            ("ipc", "clone_newipc"),
            ("uts", "clone_newuts"),
            ("cgroup", "clone_newcgroup"),
        ]
        .into_iter()
        .filter(|(_, key)| setting(key).unwrap_or(true))
        .map(|(name, _)| name)
        .collect();
        let seccomp = text
            .lines()
            .map(str::trim)
            .any(|l| l.starts_with("seccomp_string:") || l.starts_with("seccomp_policy_file:"));
        let path = text
            .lines()
            .map(str::trim)
            .filter_map(|l| {
                l.strip_prefix("envar:")?
                    .trim()
                    .strip_prefix("\"PATH=")?
                    .strip_suffix('"')
            })
            .last()
            .map(str::to_string);
        Ok(ConfigFacts {
            namespaces,
            seccomp,
            path,
        })
    }
}
