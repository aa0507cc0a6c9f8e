//! Hostile scripts, family 2: seeing what is not yours. The service's secrets, the host's
//! files and processes, the network (the service's own port included) and other executions'
//! files, sockets and IPC are out of a script's sight; other clients are served meanwhile.

use crate::common;
use crate::hostile;

use common::{assert_serving, Server};
use hostile::{during, during_as, nonce, Client, HostSnapshot};
use serde_json::{json, Value};
use std::time::Duration;

/// The script never holds a secret literally (its source sits in the runner's memory, which
/// /proc/1/mem exposes): it rebuilds each one reversed, at run time.
fn reversed(s: &str) -> String {
    s.chars().rev().collect()
}

const SEARCH: &str = r#"
import os, time
SECRETS = [s[::-1] for s in @SECRETS@]
NEEDLES = [s.encode() for s in SECRETS]
SKIP_PROC = {"mem", "pagemap", "kpageflags", "kpagecount", "clear_refs", "task"}

def hits_in(data):
    return [n.decode() for n in NEEDLES if n in data]

def read(path, limit=256 * 1024):
    try:
        with open(path, "rb") as f:
            return f.read(limit)
    except OSError:
        return b""

def main():
    found, scanned = [], 0
    started = time.monotonic()
    if @PLANT@:
        # The control run: a copy planted where the walk goes must be found.
        with open("/tmp/hostile-planted", "w") as f:
            f.write("..." + SECRETS[0] + "...")
    # 1. the environment
    for k, v in os.environ.items():
        if hits_in(("%s=%s" % (k, v)).encode()):
            found.append("os.environ[%s]" % k)
    # 2. every readable file of every visible process
    for pid in [p for p in os.listdir("/proc") if p.isdigit()] + ["self", "thread-self"]:
        base = "/proc/" + pid
        try:
            names = os.listdir(base)
        except OSError:
            continue
        for name in names:
            if name in SKIP_PROC:
                continue
            path = base + "/" + name
            if os.path.isfile(path):
                scanned += 1
                if hits_in(read(path)):
                    found.append(path)
    for name in os.listdir("/proc"):
        path = "/proc/" + name
        if not name.isdigit() and os.path.isfile(path) and name not in ("kcore", "kmsg", "kpagecount", "kpageflags", "kpagecgroup"):
            scanned += 1
            if hits_in(read(path)):
                found.append(path)
    # 3. a bounded walk of the file system, smallest and likeliest places first
    budget = 3000
    for top in ["/etc", "/tmp", "/dev/shm", "/opt", "/", "/usr/local", "/usr/lib/python3", "/usr"]:
        for root, dirs, files in os.walk(top):
            if budget <= 0 or time.monotonic() - started > 4:
                break
            if root == "/":
                dirs[:] = [d for d in dirs if d not in ("proc", "dev", "usr", "etc", "opt", "tmp")]
            for name in files[:200]:
                path = os.path.join(root, name)
                if os.path.islink(path) or not os.path.isfile(path):
                    continue
                budget -= 1
                scanned += 1
                if hits_in(read(path)):
                    found.append(path)
    return {"found": found, "scanned": scanned, "env": sorted(os.environ)}
"#;

#[test]
fn service_secrets_are_invisible_to_scripts() {
    let secret = nonce("pe-secret");
    let token = nonce("api-token");
    let server = Server::start_with(&[("PE_SECRET", secret.as_str()), ("API_TOKEN", token.as_str())]);
    let client = Client::with_token(&server, &token);
    let snapshot = HostSnapshot::take(&server);
    let script = SEARCH.replace("@SECRETS@", &json!([reversed(&secret), reversed(&token)]).to_string());
    during_as(client, || {
        let control = client.execute(&script.replace("@PLANT@", "True")).result();
        assert_eq!(
            control["found"],
            json!(["/tmp/hostile-planted"]),
            "the search works: {control}"
        );
        let r = client.execute(&script.replace("@PLANT@", "False"));
        assert!(!r.text().contains(&secret) && !r.text().contains(&token));
        let v = r.result();
        assert_eq!(v["found"], json!([]), "a script found a service secret: {v}");
        assert!(
            v["scanned"].as_u64().unwrap() > 1000,
            "the search must have looked around: {v}"
        );
        for name in v["env"].as_array().unwrap() {
            let name = name.as_str().unwrap();
            assert!(
                ![
                    "PE_SECRET",
                    "API_TOKEN",
                    "PORT",
                    "NSJAIL_PATH",
                    "NSJAIL_CONFIG",
                    "SANDBOX_PYTHON"
                ]
                .contains(&name),
                "the service's {name} reached the jail: {v}"
            );
        }
        // An error that dumps everything it can reach carries no secret either.
        let r = client.execute(
            "import os\ndef main():\n    raise RuntimeError(repr(dict(os.environ)) + open('/proc/1/environ').read() + open('/proc/self/mountinfo').read())\n",
        );
        hostile::assert_error(&r, 400, "runtime_error");
        assert!(
            !r.text().contains(&secret) && !r.text().contains(&token),
            "{}",
            r.text()
        );
        // Without the token, nothing runs at all.
        let r = server.execute("def main():\n    return 1\n");
        hostile::assert_error(&r, 401, "unauthorized");
    });
    assert!(
        !server.raw_logs().contains(&secret) && !server.raw_logs().contains(&token),
        "secrets in the service's logs"
    );
    assert_serving(client);
    snapshot.assert_restored();
}

#[test]
fn host_files_are_absent_or_unreadable() {
    let server = hostile::shared_server();
    let snapshot = HostSnapshot::take(&server);
    let repo = env!("CARGO_MANIFEST_DIR");
    during(&server, || {
        let script = r#"
import errno, os, socket
PATHS = ["/etc/shadow", "/etc/gshadow", "/etc/sudoers", "/etc/ssh", "/etc/hostname", "/etc/resolv.conf",
         "/etc/machine-id", "/root", "/root/.ssh", "/root/.bash_history", "/home", "/work", "/var",
         "/var/run/docker.sock", "/run", "/run/secrets", "/srv", "/mnt", "/media", "/boot", "/sys",
         "/sys/fs/cgroup", "/lost+found", "/proc/1/root/etc/shadow", "/proc/1/cwd/../etc/shadow",
         "@REPO@", "@REPO@/.git/config", "@REPO@/Cargo.toml", "/.dockerenv"]
def main():
    out = {}
    for path in PATHS:
        try:
            if os.path.isdir(path):
                os.listdir(path)
                out[path] = "LISTED"
            else:
                open(path, "rb").read(1)
                out[path] = "READ"
        except OSError as e:
            out[path] = errno.errorcode.get(e.errno, str(e.errno))
    return {"paths": out, "etc": sorted(os.listdir("/etc")), "root": sorted(os.listdir("/")),
            "hostname": socket.gethostname(), "tmp": [n for n in os.listdir("/tmp") if n != os.path.basename(os.getcwd())]}
"#
        .replace("@REPO@", repo);
        let v = server.execute(&script).result();
        for (path, outcome) in v["paths"].as_object().unwrap() {
            assert!(
                ["ENOENT", "EACCES"].contains(&outcome.as_str().unwrap()),
                "{path}: {outcome}; all: {v}"
            );
        }
        assert_eq!(v["etc"], json!(["group", "hosts", "ld.so.cache", "passwd"]), "{v}");
        assert_eq!(
            v["root"],
            json!(["bin", "dev", "etc", "lib", "lib64", "opt", "proc", "tmp", "usr"]),
            "{v}"
        );
        assert_eq!(v["hostname"], "sandbox");
        assert_eq!(v["tmp"], json!([]), "a fresh /tmp, empty but for the working directory");
        // The jail's /etc/passwd is its own two lines, not the host's.
        let v = server
            .execute("def main():\n    return open('/etc/passwd').read().count('\\n')\n")
            .result();
        assert_eq!(v, json!(2));
    });
    assert_serving(&server);
    snapshot.assert_restored();
}

#[test]
fn host_processes_and_other_executions_are_invisible() {
    let server = hostile::shared_server();
    let snapshot = HostSnapshot::take(&server);
    let marker = nonce("hostile-proc");
    let server_pid = server.pid();
    let test_pid = std::process::id();
    during(&server, || {
        std::thread::scope(|scope| {
            // A: an execution with a recognisable process, alive for a few seconds.
            let a = scope.spawn(|| {
                let script = format!(
                    "import subprocess, sys, time\ndef main():\n    p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(6)', '{marker}'])\n    start = time.time()\n    time.sleep(4)\n    p.kill()\n    return [start, time.time()]\n"
                );
                server.execute(&script)
            });
            std::thread::sleep(Duration::from_millis(1500));
            // B: looks at every process it can see.
            let script = r#"
import os, time
def main():
    seen = {}
    for pid in sorted(int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            seen[pid] = open("/proc/%d/cmdline" % pid, "rb").read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            pass
    checks = {}
    for pid in (@SERVER@, @TEST@):
        checks[str(pid)] = os.path.exists("/proc/%d" % pid)
        try:
            os.kill(pid, 0)
            checks["kill %d" % pid] = "delivered"
        except OSError as e:
            checks["kill %d" % pid] = e.strerror
    return {"when": time.time(), "pids": sorted(seen), "marker": any("@MARKER@"[::-1] in c for c in seen.values()),
            "programs": sorted({os.path.basename(c.split(" ")[0]) for c in seen.values()}),
            "checks": checks}
"#
            .replace("@SERVER@", &server_pid.to_string())
            .replace("@TEST@", &test_pid.to_string())
            .replace("@MARKER@", &reversed(&marker));
            let b = server.execute(&script).result();
            let a = a.join().unwrap().result();
            let when = b["when"].as_f64().unwrap();
            assert!(
                a[0].as_f64().unwrap() < when && when < a[1].as_f64().unwrap(),
                "B looked while A ran: {a} {b}"
            );
            assert_eq!(b["pids"], json!([1, 2]), "only B's own runner and script: {b}");
            assert_eq!(b["marker"], false, "{b}");
            assert_eq!(
                b["programs"],
                json!(["python3"]),
                "no nsjail, no service, no test binary: {b}"
            );
            for (key, value) in b["checks"].as_object().unwrap() {
                if key.starts_with("kill") {
                    assert_eq!(value, "No such process", "{key}: {b}");
                } else {
                    assert_eq!(value, false, "/proc/{key} visible: {b}");
                }
            }
        });
    });
    assert_serving(&server);
    snapshot.assert_restored();
}

/// The host's first non-loopback IPv4 address, if it has one (from the kernel's routing choice;
/// nothing is sent).
fn host_address() -> Option<String> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then(|| ip.to_string())
}

#[test]
fn the_network_is_not_there() {
    let server = hostile::shared_server();
    let snapshot = HostSnapshot::take(&server);
    // Something listening on the host, where a script would love to reach it.
    let abstract_name = nonce("hostile-abstract");
    let abstract_addr = <std::os::unix::net::SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(
        abstract_name.as_bytes(),
    )
    .unwrap();
    let _listener = std::os::unix::net::UnixListener::bind_addr(&abstract_addr).unwrap();
    let tcp = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let tcp_port = tcp.local_addr().unwrap().port();
    let mut targets = vec![
        json!(["service port on loopback", "127.0.0.1", server.port]),
        json!(["test listener on loopback", "127.0.0.1", tcp_port]),
        json!(["service port on ::1", "::1", server.port]),
        json!(["metadata server", "169.254.169.254", 80]),
        json!(["public DNS", "8.8.8.8", 53]),
        json!(["public HTTPS", "1.1.1.1", 443]),
        json!(["private network", "10.0.0.1", 80]),
        json!(["docker bridge", "172.17.0.1", 80]),
        json!(["IPv6 public DNS", "2001:4860:4860::8888", 53]),
    ];
    if let Some(ip) = host_address() {
        targets.push(json!(["host address, service port", ip, server.port]));
        targets.push(json!(["host address, test listener", ip, tcp_port]));
    }
    during(&server, || {
        let script = r#"
import errno, socket, time
TARGETS = @TARGETS@
def main():
    out = {}
    for label, host, port in TARGETS:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(5)
        t = time.monotonic()
        try:
            s.connect((host, port))
            outcome = "CONNECTED"
        except OSError as e:
            outcome = errno.errorcode.get(e.errno, type(e).__name__) if e.errno else type(e).__name__
        out[label] = [outcome, round(time.monotonic() - t, 3)]
        s.close()
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.sendto(b"x", ("8.8.8.8", 53))
        out["udp send"] = ["SENT", 0]
    except OSError as e:
        out["udp send"] = [errno.errorcode[e.errno], 0]
    for name in ["example.com", "metadata.google.internal", "localhost.localdomain.example"]:
        t = time.monotonic()
        try:
            socket.getaddrinfo(name, 80)
            out["dns " + name] = ["RESOLVED", 0]
        except socket.gaierror as e:
            out["dns " + name] = ["gaierror", round(time.monotonic() - t, 3)]
    a = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        a.connect("\0" + "@ABSTRACT@"[::-1])
        out["host abstract socket"] = ["CONNECTED", 0]
    except OSError as e:
        out["host abstract socket"] = [errno.errorcode[e.errno], 0]
    out["interfaces"] = sorted(l.split(":")[0].strip() for l in open("/proc/net/dev").read().splitlines()[2:])
    return out
"#
        .replace("@TARGETS@", &Value::Array(targets.clone()).to_string())
        .replace("@ABSTRACT@", &reversed(&abstract_name));
        let v = server.execute(&script).result();
        assert_eq!(v["interfaces"], json!(["lo"]), "{v}");
        for (label, outcome) in v.as_object().unwrap() {
            if label == "interfaces" {
                continue;
            }
            let (what, took) = (outcome[0].as_str().unwrap(), outcome[1].as_f64().unwrap());
            assert!(
                [
                    "ECONNREFUSED",
                    "ENETUNREACH",
                    "EHOSTUNREACH",
                    "EADDRNOTAVAIL",
                    "gaierror"
                ]
                .contains(&what),
                "{label}: {what}; all: {v}"
            );
            assert!(took < 2.0, "{label} took {took} s to fail: it must fail fast; all: {v}");
        }
    });
    assert_serving(&server);
    snapshot.assert_restored();
}

#[test]
fn executions_cannot_see_each_others_files_sockets_or_ipc() {
    let server = hostile::shared_server();
    let snapshot = HostSnapshot::take(&server);
    let marker = nonce("hostile-tmp");
    // SysV IPC keys are global within an IPC namespace: the same key in both jails.
    let key = 0x5e_c0_01_u32;
    let looker = r#"
import ctypes, errno, os, socket, time
libc = ctypes.CDLL(None, use_errno=True)
MARKER = "@MARKER@"[::-1]
def main():
    out = {"when": time.time(), "tmp": [n for n in os.listdir("/tmp") if n != os.path.basename(os.getcwd())], "shm": os.listdir("/dev/shm")}
    out["marker files"] = [p for p in ("/tmp/" + MARKER, "/dev/shm/" + MARKER) if os.path.exists(p)]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect("\0" + MARKER)
        out["abstract"] = "CONNECTED"
    except OSError as e:
        out["abstract"] = errno.errorcode[e.errno]
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        t.connect(("127.0.0.1", 47011))
        out["loopback port"] = "CONNECTED"
    except OSError as e:
        out["loopback port"] = errno.errorcode[e.errno]
    r = libc.shmget(@KEY@, 0, 0)
    out["sysv shm"] = "FOUND" if r >= 0 else errno.errorcode[ctypes.get_errno()]
    r = libc.msgget(@KEY@, 0)
    out["sysv msg"] = "FOUND" if r >= 0 else errno.errorcode[ctypes.get_errno()]
    return out
"#
    .replace("@MARKER@", &reversed(&marker))
    .replace("@KEY@", &key.to_string());
    let check = |v: &Value| {
        assert_eq!(v["tmp"], json!([]), "{v}");
        assert_eq!(v["shm"], json!([]), "{v}");
        assert_eq!(v["marker files"], json!([]), "{v}");
        assert_eq!(v["abstract"], "ECONNREFUSED", "{v}");
        assert_eq!(v["loopback port"], "ECONNREFUSED", "{v}");
        assert_eq!(v["sysv shm"], "ENOENT", "{v}");
        assert_eq!(v["sysv msg"], "ENOENT", "{v}");
    };
    during(&server, || {
        std::thread::scope(|scope| {
            let writer = scope.spawn(|| {
                let script = r#"
import ctypes, os, socket, time
libc = ctypes.CDLL(None, use_errno=True)
MARKER = "@MARKER@"[::-1]
def main():
    for path in ("/tmp/" + MARKER, "/dev/shm/" + MARKER):
        with open(path, "w") as f:
            f.write("secret of execution A")
    u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    u.bind("\0" + MARKER)
    u.listen()
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    t.bind(("127.0.0.1", 47011))
    t.listen()
    shm = libc.shmget(@KEY@, 4096, 0o1666)
    msg = libc.msgget(@KEY@, 0o1666)
    start = time.time()
    time.sleep(4)
    return {"start": start, "end": time.time(), "shm": shm >= 0, "msg": msg >= 0,
            "files": sorted([n for n in os.listdir("/tmp") if n != os.path.basename(os.getcwd())] + os.listdir("/dev/shm"))}
"#
                .replace("@MARKER@", &reversed(&marker))
                .replace("@KEY@", &key.to_string());
                server.execute(&script)
            });
            std::thread::sleep(Duration::from_millis(1500));
            let during_a = server.execute(&looker).result();
            let a = writer.join().unwrap().result();
            assert_eq!(
                (a["shm"].clone(), a["msg"].clone()),
                (json!(true), json!(true)),
                "A made its IPC objects: {a}"
            );
            assert_eq!(a["files"], json!([marker.clone(), marker.clone()]), "{a}");
            let when = during_a["when"].as_f64().unwrap();
            assert!(
                a["start"].as_f64().unwrap() < when && when < a["end"].as_f64().unwrap(),
                "looked while A ran: {a} {during_a}"
            );
            check(&during_a);
        });
        // And once A is gone, nothing of it is left for the next execution.
        check(&server.execute(&looker).result());
    });
    assert_serving(&server);
    snapshot.assert_restored();
}
