//! Settings, read once from the environment at start-up with envy.
//!
//! Every limit of the API contract has a variable; a bad value stops start-up with a message
//! that names the variable.

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

const MIB: u64 = 1024 * 1024;

/// How many host ids the service owns from `JAIL_UID_BASE` on (`jail::ids`).
pub const JAIL_ID_RANGE: u32 = 1024;
/// Executions at once, at most, and warm jails per flavour: every jail that exists at once
/// (executions, each of the three flavours' warm jails, the zygotes and the probe) takes an id
/// of its own, so together they must fit in the range, with room for ids given back late.
pub const MAX_SLOTS: usize = 256;
pub const MAX_POOL_SIZE: usize = 128;
const _: () = assert!(MAX_SLOTS + 3 * MAX_POOL_SIZE + 16 <= JAIL_ID_RANGE as usize);
/// Ids below this are the host's own users (and 65534, nobody).
const LOWEST_JAIL_UID_BASE: u32 = 65536;
/// Some tools treat ids as signed: the whole range stays below 2^31.
const HIGHEST_JAIL_ID: u32 = i32::MAX as u32;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
struct Raw {
    port: u16,
    api_token: Option<String>,
    timeout_seconds: f64,
    memory_limit_mb: u64,
    max_processes: u64,
    jail_cpus: f64,
    max_body_bytes: u64,
    max_script_bytes: u64,
    max_output_bytes: u64,
    max_result_bytes: u64,
    max_concurrent: Option<usize>,
    queue_limit: usize,
    queue_timeout_seconds: f64,
    header_read_timeout_seconds: f64,
    body_read_timeout_seconds: f64,
    answer_write_timeout_seconds: f64,
    shutdown_grace_seconds: f64,
    pool_size: Option<usize>,
    pool_max_idle_seconds: f64,
    nsjail_path: PathBuf,
    nsjail_config: PathBuf,
    sandbox_python: PathBuf,
    sandbox_userns: String,
    sandbox_cgroup: String,
    jail_uid_base: u32,
    sandbox_strategy: String,
    warm_flavours: String,
    google_cloud_project: Option<String>,
}

impl Default for Raw {
    fn default() -> Self {
        Raw {
            port: 8080,
            api_token: None,
            timeout_seconds: 10.0,
            memory_limit_mb: 512,
            max_processes: 64,
            jail_cpus: 1.0,
            max_body_bytes: 2 * MIB,
            max_script_bytes: MIB,
            max_output_bytes: MIB,
            max_result_bytes: 8 * MIB,
            max_concurrent: None,
            queue_limit: 64,
            queue_timeout_seconds: 30.0,
            header_read_timeout_seconds: 10.0,
            body_read_timeout_seconds: 30.0,
            answer_write_timeout_seconds: 30.0,
            shutdown_grace_seconds: 9.0,
            pool_size: None,
            pool_max_idle_seconds: 60.0,
            nsjail_path: PathBuf::from("/usr/local/bin/nsjail"),
            nsjail_config: PathBuf::from("/etc/python-executor/nsjail.cfg"),
            sandbox_python: PathBuf::from("/usr/local/bin/python3"),
            sandbox_userns: "auto".into(),
            sandbox_cgroup: "auto".into(),
            // Clear of host accounts, Debian's subuid ranges and systemd's container range
            // (524288-1879048191); see src/jail/ids.rs.
            jail_uid_base: 1_900_000_000,
            sandbox_strategy: "auto".into(),
            warm_flavours: "data".into(),
            google_cloud_project: None,
        }
    }
}

/// Whether to use a user namespace: found by the probe, or forced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsernsChoice {
    Auto,
    On,
    Off,
}

/// How jails are started (`SANDBOX_STRATEGY`): forked from a zygote, taken from a pool of
/// warm nsjail jails, or one nsjail per execution; `auto`: zygote if the probe proves it on
/// this host, else the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrategyChoice {
    Auto,
    Zygote,
    Pool,
    Cold,
}

/// Which cgroup hierarchy to put jails in: found by the probe, or forced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupChoice {
    Auto,
    V2,
    V1,
    None,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub port: u16,
    pub api_token: Option<String>,
    pub limits: Limits,
    pub max_body_bytes: usize,
    pub max_script_bytes: usize,
    /// `None`: derived from CPUs and memory once the sandbox is known.
    pub max_concurrent: Option<usize>,
    pub queue_limit: usize,
    pub queue_timeout: Duration,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    /// How long a connection may take no byte of its answer before it is dropped.
    pub answer_write_timeout: Duration,
    pub shutdown_grace: Duration,
    /// `None`: sized from the admission limit; `Some(0)`: every execution starts cold.
    pub pool_size: Option<usize>,
    pub pool_max_idle: Duration,
    pub nsjail_path: PathBuf,
    pub nsjail_config: PathBuf,
    pub sandbox_python: PathBuf,
    pub userns: UsernsChoice,
    pub cgroup: CgroupChoice,
    /// The first of the host uids/gids the service owns for its jails (src/jail/ids.rs).
    pub jail_uid_base: u32,
    pub strategy: StrategyChoice,
    pub warm: WarmFlavours,
    pub google_cloud_project: Option<String>,
}

/// Which flavours of jail are made ready before their first request (`WARM_FLAVOURS`): a
/// zygote each under the zygote strategy, warm jails in the pool. Plain jails always are; a
/// flavour not listed is prepared from its first request on (that request gets a jail started
/// for it). Importing pandas costs a zygote or a warm jail about 0.3 s of CPU and 60 MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WarmFlavours {
    /// numpy and pandas.
    pub data: bool,
    /// matplotlib's pyplot too.
    pub chart: bool,
}

impl WarmFlavours {
    fn parse(text: &str) -> Result<WarmFlavours, String> {
        let mut warm = WarmFlavours {
            data: false,
            chart: false,
        };
        let mut none = false;
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name.to_ascii_lowercase().as_str() {
                "data" => warm.data = true,
                "chart" => warm.chart = true,
                "plain" => {}
                "none" => none = true,
                other => {
                    return Err(format!(
                        "invalid configuration: WARM_FLAVOURS is a comma-separated list of data and chart (or none), got {other:?}"
                    ))
                }
            }
        }
        if none && (warm.data || warm.chart) {
            return Err(format!(
                "invalid configuration: WARM_FLAVOURS is none or a list of flavours, not both: {text:?}"
            ));
        }
        Ok(warm)
    }
}

/// The limits of one execution. Requests may lower them, never raise them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub timeout: Duration,
    pub memory_bytes: u64,
    pub max_processes: u64,
    pub jail_cpus: f64,
    pub max_output_bytes: usize,
    pub max_result_bytes: usize,
}

impl Settings {
    /// The service's defaults: the settings when no variable is set (tests/deploy.rs checks
    /// the image and the Cloud Run service against them).
    pub fn defaults() -> Settings {
        Settings::from_iter(Vec::<(String, String)>::new()).expect("the defaults are valid settings")
    }

    /// The settings of this process: its environment, whose named files must exist (and the
    /// programs be executable). Whether they are nsjail, its config and Python is the probe's
    /// to find out.
    pub fn from_env() -> Result<Settings, String> {
        use std::os::unix::fs::PermissionsExt;
        let settings = Self::from_iter(std::env::vars())?;
        for (name, path, program) in [
            ("NSJAIL_PATH", &settings.nsjail_path, true),
            ("NSJAIL_CONFIG", &settings.nsjail_config, false),
            ("SANDBOX_PYTHON", &settings.sandbox_python, true),
        ] {
            let wrong = match std::fs::metadata(path) {
                Err(_) => Some("does not exist"),
                Ok(m) if !m.is_file() => Some("is not a file"),
                Ok(m) if program && m.permissions().mode() & 0o111 == 0 => Some("is not executable"),
                Ok(_) => None,
            };
            if let Some(wrong) = wrong {
                return Err(format!("invalid configuration: {name}: {} {wrong}", path.display()));
            }
        }
        Ok(settings)
    }

    pub fn from_iter<I: IntoIterator<Item = (String, String)>>(vars: I) -> Result<Settings, String> {
        // envy matches variables to fields case-insensitively; only ours are read.
        let raw: Raw = envy::from_iter(vars).map_err(|e| format!("invalid configuration: {e}"))?;
        let seconds = |name: &str, value: f64, min: f64, max: f64| -> Result<Duration, String> {
            if value.is_finite() && value >= min && value <= max {
                Ok(Duration::from_secs_f64(value))
            } else {
                Err(format!(
                    "invalid configuration: {name} must be between {min} and {max} seconds, got {value}"
                ))
            }
        };
        let range = |name: &str, value: u64, min: u64, max: u64| -> Result<u64, String> {
            if (min..=max).contains(&value) {
                Ok(value)
            } else {
                Err(format!(
                    "invalid configuration: {name} must be between {min} and {max}, got {value}"
                ))
            }
        };
        if !(raw.jail_cpus.is_finite() && raw.jail_cpus >= 0.05 && raw.jail_cpus <= 64.0) {
            return Err(format!(
                "invalid configuration: JAIL_CPUS must be between 0.05 and 64, got {}",
                raw.jail_cpus
            ));
        }
        let userns = match raw.sandbox_userns.to_ascii_lowercase().as_str() {
            "auto" => UsernsChoice::Auto,
            "on" | "true" | "1" => UsernsChoice::On,
            "off" | "false" | "0" => UsernsChoice::Off,
            other => {
                return Err(format!(
                    "invalid configuration: SANDBOX_USERNS must be auto, on or off, got {other:?}"
                ))
            }
        };
        let cgroup = match raw.sandbox_cgroup.to_ascii_lowercase().as_str() {
            "auto" => CgroupChoice::Auto,
            "v2" => CgroupChoice::V2,
            "v1" => CgroupChoice::V1,
            "none" => CgroupChoice::None,
            other => {
                return Err(format!(
                    "invalid configuration: SANDBOX_CGROUP must be auto, v2, v1 or none, got {other:?}"
                ))
            }
        };
        let strategy = match raw.sandbox_strategy.to_ascii_lowercase().as_str() {
            "auto" => StrategyChoice::Auto,
            "zygote" => StrategyChoice::Zygote,
            "pool" => StrategyChoice::Pool,
            "cold" => StrategyChoice::Cold,
            other => {
                return Err(format!(
                    "invalid configuration: SANDBOX_STRATEGY must be auto, zygote, pool or cold, got {other:?}"
                ))
            }
        };
        let warm = WarmFlavours::parse(&raw.warm_flavours)?;
        match raw.max_concurrent {
            Some(0) => return Err("invalid configuration: MAX_CONCURRENT must be at least 1".into()),
            Some(n) if n > MAX_SLOTS => {
                return Err(format!(
                    "invalid configuration: MAX_CONCURRENT must be at most {MAX_SLOTS} (every jail takes one of the {JAIL_ID_RANGE} ids from JAIL_UID_BASE), got {n}"
                ))
            }
            _ => {}
        }
        if let Some(n) = raw.pool_size.filter(|&n| n > MAX_POOL_SIZE) {
            return Err(format!(
                "invalid configuration: POOL_SIZE must be at most {MAX_POOL_SIZE} (every jail takes one of the {JAIL_ID_RANGE} ids from JAIL_UID_BASE), got {n}"
            ));
        }
        let api_token = raw.api_token.filter(|t| !t.is_empty());
        if api_token
            .as_deref()
            .is_some_and(|t| t.trim() != t || t.chars().any(char::is_control))
        {
            // Clients' header values lose surrounding whitespace: every request would be 401.
            return Err("invalid configuration: API_TOKEN must not begin or end with whitespace (a newline from `echo` included) nor hold control characters: no client could send it".into());
        }
        Ok(Settings {
            port: raw.port,
            api_token,
            limits: Limits {
                timeout: seconds("TIMEOUT_SECONDS", raw.timeout_seconds, 0.1, 3600.0)?,
                memory_bytes: range("MEMORY_LIMIT_MB", raw.memory_limit_mb, 32, 1 << 20)? * MIB,
                max_processes: range("MAX_PROCESSES", raw.max_processes, 4, 1 << 16)?,
                jail_cpus: raw.jail_cpus,
                max_output_bytes: range("MAX_OUTPUT_BYTES", raw.max_output_bytes, 1024, 1 << 30)? as usize,
                max_result_bytes: range("MAX_RESULT_BYTES", raw.max_result_bytes, 1024, 1 << 30)? as usize,
            },
            max_body_bytes: range("MAX_BODY_BYTES", raw.max_body_bytes, 1024, 1 << 30)? as usize,
            max_script_bytes: range("MAX_SCRIPT_BYTES", raw.max_script_bytes, 16, 1 << 30)? as usize,
            max_concurrent: raw.max_concurrent,
            queue_limit: raw.queue_limit,
            queue_timeout: seconds("QUEUE_TIMEOUT_SECONDS", raw.queue_timeout_seconds, 0.0, 3600.0)?,
            header_read_timeout: seconds(
                "HEADER_READ_TIMEOUT_SECONDS",
                raw.header_read_timeout_seconds,
                0.1,
                3600.0,
            )?,
            body_read_timeout: seconds("BODY_READ_TIMEOUT_SECONDS", raw.body_read_timeout_seconds, 0.1, 3600.0)?,
            answer_write_timeout: seconds(
                "ANSWER_WRITE_TIMEOUT_SECONDS",
                raw.answer_write_timeout_seconds,
                0.1,
                3600.0,
            )?,
            shutdown_grace: seconds("SHUTDOWN_GRACE_SECONDS", raw.shutdown_grace_seconds, 0.0, 3600.0)?,
            pool_size: raw.pool_size,
            pool_max_idle: seconds("POOL_MAX_IDLE_SECONDS", raw.pool_max_idle_seconds, 1.0, 86400.0)?,
            nsjail_path: raw.nsjail_path,
            nsjail_config: raw.nsjail_config,
            sandbox_python: raw.sandbox_python,
            userns,
            cgroup,
            jail_uid_base: range(
                "JAIL_UID_BASE",
                raw.jail_uid_base.into(),
                LOWEST_JAIL_UID_BASE.into(),
                (HIGHEST_JAIL_ID - JAIL_ID_RANGE).into(),
            )? as u32,
            strategy,
            warm,
            google_cloud_project: raw.google_cloud_project.filter(|p| !p.is_empty()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_match_the_contract() {
        let s = Settings::defaults();
        assert_eq!(s.port, 8080);
        assert_eq!(s.limits.timeout, Duration::from_secs(10));
        assert_eq!(s.limits.memory_bytes, 512 * MIB);
        assert_eq!(s.max_body_bytes, 2 * MIB as usize);
        assert_eq!(s.max_script_bytes, MIB as usize);
        assert_eq!(s.limits.max_output_bytes, MIB as usize);
        assert_eq!(s.limits.max_result_bytes, 8 * MIB as usize);
        assert!(s.api_token.is_none());
    }

    #[test]
    fn reads_port_and_limits() {
        let s = Settings::from_iter(vars(&[
            ("PORT", "9000"),
            ("TIMEOUT_SECONDS", "2.5"),
            ("MEMORY_LIMIT_MB", "256"),
        ]))
        .unwrap();
        assert_eq!(s.port, 9000);
        assert_eq!(s.limits.timeout, Duration::from_millis(2500));
        assert_eq!(s.limits.memory_bytes, 256 * MIB);
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        let err = Settings::from_iter(vars(&[("PORT", "eighty")])).unwrap_err();
        assert!(err.contains("PORT"), "{err}");
        let err = Settings::from_iter(vars(&[("TIMEOUT_SECONDS", "0")])).unwrap_err();
        assert!(err.contains("TIMEOUT_SECONDS"), "{err}");
        let err = Settings::from_iter(vars(&[("SANDBOX_CGROUP", "v3")])).unwrap_err();
        assert!(err.contains("SANDBOX_CGROUP"), "{err}");
        let err = Settings::from_iter(vars(&[("MEMORY_LIMIT_MB", "-1")])).unwrap_err();
        assert!(err.contains("MEMORY_LIMIT_MB"), "{err}");
    }

    #[test]
    fn jails_at_once_fit_in_the_services_ids() {
        let max = MAX_SLOTS.to_string();
        assert_eq!(
            Settings::from_iter(vars(&[("MAX_CONCURRENT", &max)])).map(|s| s.max_concurrent),
            Ok(Some(MAX_SLOTS))
        );
        let over = (MAX_SLOTS + 1).to_string();
        let err = Settings::from_iter(vars(&[("MAX_CONCURRENT", &over)])).unwrap_err();
        assert!(err.contains("MAX_CONCURRENT must be at most 256"), "{err}");
        let over = (MAX_POOL_SIZE + 1).to_string();
        let err = Settings::from_iter(vars(&[("POOL_SIZE", &over)])).unwrap_err();
        assert!(err.contains("POOL_SIZE must be at most 128"), "{err}");
    }

    #[test]
    fn warm_flavours_are_data_by_default_and_may_be_none_or_more() {
        let warm = |text: &str| Settings::from_iter(vars(&[("WARM_FLAVOURS", text)])).map(|s| s.warm);
        assert_eq!(
            Settings::defaults().warm,
            WarmFlavours {
                data: true,
                chart: false
            }
        );
        assert_eq!(
            warm(""),
            Ok(WarmFlavours {
                data: false,
                chart: false
            })
        );
        assert_eq!(
            warm("none"),
            Ok(WarmFlavours {
                data: false,
                chart: false
            })
        );
        assert_eq!(
            warm("data, chart"),
            Ok(WarmFlavours {
                data: true,
                chart: true
            })
        );
        assert_eq!(
            warm("plain,chart"),
            Ok(WarmFlavours {
                data: false,
                chart: true
            })
        );
        let err = warm("pandas").unwrap_err();
        assert!(err.contains("WARM_FLAVOURS") && err.contains("pandas"), "{err}");
        let err = warm("none,data").unwrap_err();
        assert!(err.contains("WARM_FLAVOURS") && err.contains("none,data"), "{err}");
    }

    #[test]
    fn the_jail_id_range_stays_clear_of_host_users_and_signed_overflow() {
        let base = |value: &str| Settings::from_iter(vars(&[("JAIL_UID_BASE", value)])).map(|s| s.jail_uid_base);
        for bad in ["1000", "65534", "2147483647", "4294967295"] {
            let err = base(bad).unwrap_err();
            assert!(err.contains("JAIL_UID_BASE"), "{err}");
        }
        assert_eq!(base("65536"), Ok(65536));
    }

    #[test]
    fn an_empty_token_means_no_authentication() {
        let s = Settings::from_iter(vars(&[("API_TOKEN", "")])).unwrap();
        assert!(s.api_token.is_none());
    }

    #[test]
    fn a_token_no_client_could_send_is_refused() {
        for bad in ["secret\n", " secret", "secret ", "sec\u{7}ret", " "] {
            let err = Settings::from_iter(vars(&[("API_TOKEN", bad)])).unwrap_err();
            assert!(err.contains("API_TOKEN"), "{bad:?}: {err}");
        }
        let s = Settings::from_iter(vars(&[("API_TOKEN", "s3cr3t-with inner space")])).unwrap();
        assert_eq!(s.api_token.as_deref(), Some("s3cr3t-with inner space"));
    }
}
