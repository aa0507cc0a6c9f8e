//! A job (one validated script, its limits and data) and what its success carries.

use crate::jail::protocol::{CollectedFile, InputFile, Usage};
use crate::jail::Captured;
use crate::validation::ScriptInfo;
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::time::Duration;

/// One validated script with the limits that apply to it.
#[derive(Debug)]
pub struct Job {
    pub script: String,
    pub info: ScriptInfo,
    pub timeout: Duration,
    pub memory_bytes: u64,
    pub data: JobData,
}

/// What a request sends in beside its script, and what it asks back beside the result.
#[derive(Debug, Default)]
pub struct JobData {
    /// `main`'s argument, as the client wrote it; `None` without one.
    pub input: Option<Box<RawValue>>,
    /// Written into the script's working directory before it runs.
    pub files: Vec<InputFile>,
    /// Glob patterns of files to bring back; `None`: the answer has no `files`.
    pub collect: Option<Vec<String>>,
    pub include: Include,
}

/// Extra fields a request asked for in its success body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Include {
    pub usage: bool,
    pub stderr: bool,
}

#[derive(Debug)]
pub struct Success {
    pub result: Box<RawValue>,
    pub stdout: Captured,
    pub stderr: Captured,
    /// What `collect` brought back; None when the request had no `collect`.
    pub files: Option<BTreeMap<String, CollectedFile>>,
    pub usage: Usage,
}
