//! Test harness: starts the real `python-executor` binary (real nsjail, real Python, the
//! top-level nsjail.cfg) on a free port and talks plain HTTP/1.1 to it over TCP.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The environment a test server gets: this checkout's sandbox, set up by `make test`.
pub fn sandbox_env() -> Vec<(String, String)> {
    let repo = repo();
    let nsjail = repo.join(".sandbox/nsjail/nsjail/bin/nsjail");
    let python = repo.join(".sandbox/venv/bin/python3");
    assert!(
        nsjail.exists() && python.exists(),
        "the sandbox is not prepared: run `make test` (or ./scripts/prepare-sandbox.sh) first"
    );
    let mut env = vec![
        ("NSJAIL_PATH".into(), nsjail.display().to_string()),
        ("NSJAIL_CONFIG".into(), repo.join("nsjail.cfg").display().to_string()),
        ("SANDBOX_PYTHON".into(), python.display().to_string()),
        ("PORT".into(), "0".into()),
    ];
    // `make test` runs the key suites again under another strategy (SANDBOX_STRATEGY=pool).
    if let Ok(strategy) = std::env::var("SANDBOX_STRATEGY") {
        env.push(("SANDBOX_STRATEGY".into(), strategy));
    }
    env
}

/// The lowest JAIL_UID_BASE a test server gets (the service's default); each server's range
/// lies in `TEST_JAIL_UIDS`.
pub const TEST_JAIL_UIDS: std::ops::Range<u32> = 1_900_000_000..2_100_000_000;

/// A JAIL_UID_BASE no other test server running at the same time uses (by process and count).
fn own_jail_uid_base() -> u32 {
    static SERVERS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = SERVERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 64;
    let slot = (std::process::id() % 3000) * 64 + n;
    TEST_JAIL_UIDS.start + slot * python_executor::jail::ids::RANGE
}

pub struct Server {
    child: Child,
    pub port: u16,
    pub logs: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// Starts the service without a warm pool (POOL_SIZE=0), for tests that are not about
    /// the pool: under the pool strategy a server then spends no CPU preparing jails nobody
    /// uses (zygotes, the default here, have no pool anyway). tests/pool.rs, the lifecycle and
    /// hostile suites keep the production default.
    pub fn start_cold() -> Server {
        Server::start_cold_with(&[])
    }

    pub fn start_cold_with(extra: &[(&str, &str)]) -> Server {
        let mut all = vec![("POOL_SIZE", "0")];
        all.extend_from_slice(extra);
        Server::start_with(&all)
    }

    /// Starts the service with extra environment variables; panics if it does not come up.
    pub fn start_with(extra: &[(&str, &str)]) -> Server {
        match Server::try_start(extra) {
            Ok(server) => server,
            Err(e) => panic!("server did not start: {e}"),
        }
    }

    /// Starts the service with these soft and hard limits on open files.
    pub fn start_with_open_files(soft: u64, hard: u64, extra: &[(&str, &str)]) -> Server {
        Server::launch(extra, false, Some((soft, hard))).unwrap_or_else(|e| panic!("server did not start: {e}"))
    }

    /// Starts the service; `Err` carries its exit status and stderr if it stops instead.
    pub fn try_start(extra: &[(&str, &str)]) -> Result<Server, String> {
        Server::launch(extra, false, None)
    }

    /// `shared`: the service gets SIGTERM when the thread that starts it ends (a thread that
    /// lives as long as the test process).
    ///
    /// Unless `extra` says otherwise, with no flavour warm but plain (WARM_FLAVOURS=none): most
    /// servers never run pandas, and a data zygote (or warm data jails) would cost ~0.5 s of
    /// CPU each for nothing. The first pandas script starts the flavour: under zygotes it waits
    /// for the zygote it started, as every request finding its zygote starting does in
    /// production; under the pool it gets a jail started for it, and the pool keeps data jails
    /// from then on. The pool and zygote suites test the production default itself.
    /// The service's command line as every test server has it (see [`Server::launch`]),
    /// with `extra` environment variables.
    pub fn command(extra: &[(&str, &str)]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_python-executor"));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default());
        for (k, v) in sandbox_env() {
            command.env(k, v);
        }
        // Each server a range of jail uids of its own, as each service on a host must have:
        // servers of test processes running side by side would otherwise share per-user
        // kernel budgets through jails that happen to get the same uid.
        command.env("JAIL_UID_BASE", own_jail_uid_base().to_string());
        command.env("WARM_FLAVOURS", "none");
        for (k, v) in extra {
            command.env(k, v);
        }
        command
    }

    /// `open_files`: the soft and hard limits on open files the service starts with.
    fn launch(extra: &[(&str, &str)], shared: bool, open_files: Option<(u64, u64)>) -> Result<Server, String> {
        use std::os::unix::process::CommandExt;
        let mut command = Server::command(extra);
        // SAFETY: prctl and setrlimit are async-signal-safe; nothing else runs between fork
        // and exec.
        unsafe {
            command.pre_exec(move || {
                if shared {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                }
                if let Some((soft, hard)) = open_files {
                    let limit = libc::rlimit {
                        rlim_cur: soft,
                        rlim_max: hard,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null());
        let mut child = command.spawn().map_err(|e| e.to_string())?;
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr_text = Arc::new(Mutex::new(String::new()));
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let lines = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if v["message"] == "listening" {
                        let _ = port_tx.send(v["port"].as_u64().unwrap_or(0) as u16);
                    }
                }
                lines.lock().unwrap().push(line);
            }
        });
        let stderr = child.stderr.take().unwrap();
        let err_text = stderr_text.clone();
        let stderr_reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = BufReader::new(stderr).read_to_string(&mut text);
            err_text.lock().unwrap().push_str(&text);
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(port) = port_rx.recv_timeout(Duration::from_millis(20)) {
                return Ok(Server {
                    child,
                    port,
                    logs,
                    stderr: stderr_text,
                });
            }
            if let Ok(Some(status)) = child.try_wait() {
                // The child is gone, so its stderr is at EOF: read all of it.
                let _ = stderr_reader.join();
                return Err(format!("exited with {status}: {}", stderr_text.lock().unwrap()));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err("did not start listening within 60 s".into());
            }
        }
    }

    /// One server per test process (a suite's run) with the production defaults (but for
    /// WARM_FLAVOURS, see [`Server::launch`]), started on first use and stopped (SIGTERM, a
    /// clean shutdown) when the test process ends. For tests that only look at the answers to
    /// their own requests: not at logs, /health counters, the server's processes or its
    /// shutdown. Other tests of the suite use it at the same time, as
    /// clients of a real service do.
    pub fn shared() -> &'static Server {
        Server::shared_with(&[])
    }

    /// A shared server where every execution gets a jail started for it: [`Server::shared`]
    /// itself where that has no pool (zygotes fork each execution as it comes), else one
    /// started without (POOL_SIZE=0, under the pool strategy: cold jails).
    pub fn shared_cold() -> &'static Server {
        static COLD: std::sync::OnceLock<&'static Server> = std::sync::OnceLock::new();
        COLD.get_or_init(|| {
            let shared = Server::shared();
            if shared.get("/health").json()["strategy"] == "pool" {
                Server::shared_with(&[("POOL_SIZE", "0")])
            } else {
                shared
            }
        })
    }

    /// [`Server::shared`] with these settings: one server per test process and settings.
    pub fn shared_with(settings: &'static [(&'static str, &'static str)]) -> &'static Server {
        type Started = Vec<(&'static [(&'static str, &'static str)], &'static Server)>;
        static STARTED: Mutex<Started> = Mutex::new(Vec::new());
        let mut started = STARTED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((_, server)) = started.iter().find(|(s, _)| *s == settings) {
            return server;
        }
        let (tx, rx) = std::sync::mpsc::channel();
        // The starting thread must outlive every test: the service dies with it.
        std::thread::spawn(move || {
            let _ = tx.send(Server::launch(settings, true, None));
            loop {
                std::thread::park();
            }
        });
        let server: &'static Server = match rx.recv() {
            Ok(Ok(server)) => Box::leak(Box::new(server)),
            Ok(Err(e)) => panic!("the shared server did not start: {e}"),
            Err(_) => panic!("the shared server's starting thread ended"),
        };
        started.push((settings, server));
        server
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_lines(&self) -> Vec<Value> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The first log line that satisfies `wanted`, waiting up to 5 s for the thread that
    /// reads the service's stdout (a line written before an answer may be read after it).
    pub fn wait_for_log(&self, wanted: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(line) = self.log_lines().into_iter().find(|l| wanted(l)) {
                return Some(line);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn raw_logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// POST /execute with a JSON body built from `script`.
    pub fn execute(&self, script: &str) -> Response {
        self.post_json("/execute", &serde_json::json!({ "script": script }))
    }

    pub fn post_json(&self, path: &str, body: &Value) -> Response {
        self.request(
            "POST",
            path,
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        )
    }

    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, &[], b"")
    }

    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut raw = head.into_bytes();
        raw.extend_from_slice(body);
        Response::parse(&self.send_raw(&raw, Duration::from_secs(60)))
    }

    /// Sends bytes as they are and returns everything the server answers until it closes.
    pub fn send_raw(&self, bytes: &[u8], timeout: Duration) -> Vec<u8> {
        let mut stream = self.connect();
        stream.set_read_timeout(Some(timeout)).unwrap();
        let _ = stream.write_all(bytes);
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        answer
    }

    pub fn connect(&self) -> TcpStream {
        TcpStream::connect(("127.0.0.1", self.port)).unwrap_or_else(|e| {
            // Say why: the service's last words, if it is gone.
            let logs = self.logs.lock().unwrap();
            let tail = logs[logs.len().saturating_sub(5)..].join("\n");
            panic!(
                "connect to the service: {e}\nits stderr: {}\nits last log lines:\n{tail}",
                self.stderr.lock().unwrap()
            )
        })
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the service did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn parse(raw: &[u8]) -> Response {
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no HTTP response, got {:?}", String::from_utf8_lossy(raw)));
        let head = String::from_utf8_lossy(&raw[..split]).to_string();
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Response {
            status,
            headers,
            body: raw[split + 4..].to_vec(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }

    /// The `kind` of an error answer (panics on a success).
    pub fn kind(&self) -> String {
        self.json()["kind"]
            .as_str()
            .unwrap_or_else(|| panic!("no kind in {}", self.text()))
            .to_string()
    }

    /// Asserts a 200 and returns `result`.
    pub fn result(&self) -> Value {
        assert_eq!(self.status, 200, "expected success, got {}", self.text());
        self.json()["result"].clone()
    }
}

/// Requests, with a bearer token when the server wants one.
#[derive(Clone, Copy)]
pub struct Client<'a> {
    pub server: &'a Server,
    pub token: Option<&'a str>,
}

impl<'a> Client<'a> {
    pub fn new(server: &'a Server) -> Client<'a> {
        Client { server, token: None }
    }

    pub fn with_token(server: &'a Server, token: &'a str) -> Client<'a> {
        Client {
            server,
            token: Some(token),
        }
    }

    pub fn post(&self, body: &Value) -> Response {
        let auth = self.token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(auth) = &auth {
            headers.push(("Authorization", auth.as_str()));
        }
        self.server
            .request("POST", "/execute", &headers, body.to_string().as_bytes())
    }

    pub fn execute(&self, script: &str) -> Response {
        self.post(&serde_json::json!({ "script": script }))
    }
}

impl<'a> From<&'a Server> for Client<'a> {
    fn from(server: &'a Server) -> Client<'a> {
        Client::new(server)
    }
}

impl<'a> From<&&'a Server> for Client<'a> {
    fn from(server: &&'a Server) -> Client<'a> {
        Client::new(server)
    }
}

/// Asserts a server (or a client with its token) still answers a plain script correctly.
pub fn assert_serving<'a>(client: impl Into<Client<'a>>) {
    let r = client.into().execute("def main():\n    return 6 * 7\n");
    assert_eq!(r.status, 200, "service no longer serving: {}", r.text());
    assert_eq!(r.json(), serde_json::json!({"result": 42, "stdout": ""}));
}

#[derive(Debug, Clone)]
pub struct Proc {
    pub pid: u32,
    pub ppid: u32,
    /// `R`, `S`, `Z` (a zombie: ended, not yet reaped), ...
    pub state: char,
    pub uid: u32,
    pub name: String,
    pub cgroups: String,
}

/// Every process on the host (those that vanish while being read are skipped).
pub fn processes() -> Vec<Proc> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // comm may hold spaces and parentheses: the fields start after the last ')'.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let name = head.split_once('(').map(|(_, n)| n.to_string()).unwrap_or_default();
        let mut fields = rest.split_whitespace();
        let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let Some(ppid) = fields.next().and_then(|p| p.parse().ok()) else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let uid = status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|u| u.parse().ok())
            .unwrap_or(u32::MAX);
        let cgroups = std::fs::read_to_string(entry.path().join("cgroup")).unwrap_or_default();
        all.push(Proc {
            pid,
            ppid,
            state,
            uid,
            name,
            cgroups,
        });
    }
    all
}

/// After the service with this pid stopped: no process is left in its jails' cgroups, and
/// the cgroups themselves are gone.
pub fn assert_no_jail_left(server_pid: u32) {
    let leftover = jail_processes_of(server_pid);
    assert!(
        leftover.is_empty(),
        "processes left in the jails' cgroups: {leftover:?}"
    );
    let cgroups = service_cgroups(server_pid);
    assert!(cgroups.is_empty(), "cgroups left behind: {cgroups:?}");
}

/// Processes still in one of the cgroups of the service with this pid (its jails').
pub fn jail_processes_of(server_pid: u32) -> Vec<u32> {
    let marker = format!("-{server_pid}/");
    processes()
        .into_iter()
        .filter(|p| p.cgroups.contains("/python-executor-") && p.cgroups.contains(&marker))
        .map(|p| p.pid)
        .collect()
}

/// The service's cgroup directories (`python-executor-<pid namespace>-<pid>`) under any hierarchy.
pub fn service_cgroups(pid: u32) -> Vec<PathBuf> {
    let suffix = format!("-{pid}");
    let mut found = Vec::new();
    let mut stack = vec![PathBuf::from("/sys/fs/cgroup")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if !entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                continue;
            }
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with("python-executor-") && name.ends_with(&suffix) {
                found.push(path);
            } else if path.components().count() < 12 {
                stack.push(path);
            }
        }
    }
    found
}

/// POSTs `body` to /execute from another thread (for requests that must overlap); the handle
/// yields the response.
pub fn post_in_background(port: u16, body: Value) -> std::thread::JoinHandle<Response> {
    std::thread::spawn(move || {
        let body = body.to_string();
        let raw = format!(
            "POST /execute HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the service");
        stream.write_all(raw.as_bytes()).expect("send the request");
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        Response::parse(&answer)
    })
}

/// Standard padded base64 (what the runner writes for collected files), decoded.
pub fn decode(text: &str) -> Vec<u8> {
    let table = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut buffer = 0u32;
    let mut bits = 0;
    for c in text.bytes().filter(|&c| c != b'=') {
        let v = table.iter().position(|&t| t == c).expect("base64") as u32;
        buffer = (buffer << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    out
}
