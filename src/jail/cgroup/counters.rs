//! What the kernel counted of a jail (for `usage`): CPU time and the memory high-water mark,
//! read from the jail's own cgroup after its script ended.

use super::{write, JailCgroup, Version};
use std::fs;
use std::path::PathBuf;

/// A jail's counters, as its cgroup keeps them (`None` where this hierarchy has none).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    pub cpu_usec: Option<u64>,
    pub peak_memory_bytes: Option<u64>,
}

impl JailCgroup {
    /// The kernel's accounting of the jail so far: CPU time (v2's `cpu.stat`, there with or
    /// without the cpu controller; v1's cpuacct where it is mounted) and the memory high-water
    /// mark.
    pub fn counters(&self) -> Counters {
        let read_u64 = |path: PathBuf| fs::read_to_string(path).ok().and_then(|t| t.trim().parse::<u64>().ok());
        match self.version {
            Version::V2 => {
                let dir = &self.dirs[0];
                let cpu_usec = fs::read_to_string(dir.join("cpu.stat")).ok().and_then(|text| {
                    text.lines()
                        .find_map(|line| line.strip_prefix("usage_usec "))
                        .and_then(|n| n.trim().parse().ok())
                });
                Counters {
                    cpu_usec,
                    peak_memory_bytes: read_u64(dir.join("memory.peak")),
                }
            }
            Version::V1 => Counters {
                cpu_usec: self
                    .dirs
                    .iter()
                    .find_map(|dir| read_u64(dir.join("cpuacct.usage")))
                    .map(|ns| ns / 1000),
                peak_memory_bytes: self
                    .dirs
                    .iter()
                    .find_map(|dir| read_u64(dir.join("memory.max_usage_in_bytes"))),
            },
        }
    }

    /// Starts the memory high-water mark afresh where the kernel allows it (v1), so that what
    /// a warm jail loaded before its script counts as little as possible against the script.
    pub fn reset_peak(&self) {
        if self.version == Version::V1 {
            for dir in &self.dirs {
                let file = dir.join("memory.max_usage_in_bytes");
                if file.exists() {
                    let _ = write(&file, "0");
                }
            }
        }
    }
}
