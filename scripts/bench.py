#!/usr/bin/python3
"""Benchmark of python-executor: its three strategies side by side, in one run (issue 12).

`make bench` runs this (via scripts/bench.sh) after building the release binary. It starts
three servers from target/release/python-executor at the same time: zygotes
(SANDBOX_STRATEGY=zygote, the default where the start-up probe proves them), the warm pool
(SANDBOX_STRATEGY=pool) and cold jails (SANDBOX_STRATEGY=cold), each in a cgroup v1 cpuacct
group of its own where the host has one, and alternates between them (request by request, or
slice by slice in ABBA order), so that background noise falls on all alike. Before every
measured request or slice every server is let settle: no execution running and no jail starting
or dying (the service's child processes are exactly its ready pooled jails or zygotes), so one
server's background work never lands in another's measurement.

Measured:
  1. idle: memory (PSS of every process of the server: the service, its zygotes or pooled
     jails) and CPU over `--idle` seconds (its cpuacct group), with everything ready;
  2. sequential latency, p50 and p90: hello and a small pandas script;
  3. CPU per execution, two ways: machine-wide busy time from /proc/stat over the requests
     and the settling after them, the machine's busy rate just before subtracted (meaningless
     on a machine others load), and the server's cpuacct usage (its jails, zygotes and refills
     included, nobody else's);
  4. closed-loop throughput at 16 clients, zygote vs pool, in ABBA slices;
  5. cold start: exec of the binary to the first answered hello (median of `--starts`), zygote
     and pool alternating.
Prints a Markdown report with issue 12's goals marked met or not, and writes it to
target/bench/latest.md. Standard library only; progress goes to stderr.

`--pool` runs the older comparison instead: the warm pool on (SANDBOX_STRATEGY=pool) against
cold jails (SANDBOX_STRATEGY=cold): sequential p50/p90 of hello, pandas and a script printing
10 000 lines; throughput at 1, 4 and 16 clients (each slice counted only once its first batch
has answered, so neither the synchronised start nor the pool's initial stock passes for
sustained throughput); cold start; the pool's memory per flavour; and the floor (`python3 -I -c
pass` in nsjail with the service's config, and without nsjail). It writes target/bench/pool.md.

`--data` (`make bench BENCH_ARGS=--data`) measures what data in and out cost (issue 13), against one server
starting a jail per request (SANDBOX_STRATEGY=cold, so it settles between requests): the same hello script plain, with an empty `collect` (a pattern nothing matches), and with
1 MiB of `files` in, interleaved request by request; the p50 differences are the costs.
It writes target/bench/data.md.
"""

import argparse
import datetime
import http.client
import json
import os
import platform
import select
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BINARY = REPO / "target" / "release" / "python-executor"
MIB = 1024 * 1024

SCRIPTS = {
    "hello": 'def main():\n    return "hello"\n',
    "pandas": (
        "import pandas as pd\n\n"
        "def main():\n"
        '    print("Analyzing...")\n'
        '    df = pd.DataFrame({"x": [1, 2, 3], "y": [4, 5, 6]})\n'
        '    return {"status": "success", "value": int(df.values.sum()) + 21}\n'
    ),
    "print": 'def main():\n    for i in range(10000):\n        print("line", i)\n    return "printed"\n',
}
# Which pool shelf each script is served from (the service's flavours).
FLAVOUR = {"hello": "plain", "pandas": "data", "print": "plain"}


def check_answer(name, status, body):
    """Whether an /execute answer is the right one for the script."""
    if status != 200:
        return False
    try:
        answer = json.loads(body)
    except ValueError:
        return False
    if name == "hello":
        return answer.get("result") == "hello"
    if name == "pandas":
        return answer.get("result") == {"status": "success", "value": 42} and answer.get("stdout") == "Analyzing...\n"
    if name == "print":
        return answer.get("result") == "printed" and answer.get("stdout", "").count("\n") == 10000
    return True


BEGAN = time.perf_counter()


def log(message):
    print(f"bench: [{time.perf_counter() - BEGAN:5.1f} s] {message}", file=sys.stderr, flush=True)


# --- servers -------------------------------------------------------------------------------


def server_env(extra):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    env["NSJAIL_PATH"] = os.environ.get("NSJAIL_PATH", str(REPO / ".sandbox/nsjail/nsjail/bin/nsjail"))
    env["NSJAIL_CONFIG"] = os.environ.get("NSJAIL_CONFIG", str(REPO / "nsjail.cfg"))
    env["SANDBOX_PYTHON"] = os.environ.get("SANDBOX_PYTHON", str(REPO / ".sandbox/venv/bin/python3"))
    env["PORT"] = "0"
    env.update(extra)
    return env


def _die_with_parent():
    # If this benchmark dies without its finally blocks (SIGKILL), its servers stop too.
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _join_and_die_with_parent(cpuacct):
    (cpuacct / "cgroup.procs").write_text("0")
    _die_with_parent()


class Server:
    """One python-executor process, its logs drained by threads (it logs a line per request)."""

    def __init__(self, name, extra_env, cpuacct=None):
        self.name = name
        self.cpuacct = cpuacct
        self.pool = extra_env.get("POOL_SIZE") != "0" and extra_env.get("SANDBOX_STRATEGY") == "pool"
        self.port = None
        self.listening_at = None
        self.probe_ms = None
        self.tail = []
        self.errors = []
        self._listening = threading.Event()
        self.started_at = time.perf_counter()
        self.proc = subprocess.Popen(
            [str(BINARY)],
            env=server_env(extra_env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=(lambda: _join_and_die_with_parent(cpuacct)) if cpuacct else _die_with_parent,
        )
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        self._health = None

    def _read_stdout(self):
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if not self._listening.is_set():
                try:
                    entry = json.loads(line)
                except ValueError:
                    entry = {}
                if entry.get("message") == "sandbox ready":
                    self.probe_ms = entry.get("probe_ms")
                if entry.get("message") == "listening":
                    self.port = int(entry["port"])
                    self.listening_at = time.perf_counter()
                    self._listening.set()
            if '"severity":"ERROR"' in line or '"severity":"CRITICAL"' in line:
                if '"message":"request"' not in line:
                    self.errors = (self.errors + [line])[-20:]
            self.tail = (self.tail + [line])[-20:]
        self._listening.set()

    def _read_stderr(self):
        for raw in self.proc.stderr:
            self.tail = (self.tail + ["stderr: " + raw.decode("utf-8", "replace").rstrip("\n")])[-20:]

    def wait_listening(self, timeout=60):
        if not self._listening.wait(timeout) or self.port is None:
            self.stop()
            raise RuntimeError(f"{self.name} server did not start listening:\n" + "\n".join(self.tail))
        return self

    @property
    def pid(self):
        return self.proc.pid

    def health(self):
        if self._health is None:
            self._health = Connection(self.port)
        status, body, _ = self._health.request("GET", "/health")
        if status != 200:
            raise RuntimeError(f"{self.name}: /health answered {status}")
        return json.loads(body)

    def children(self):
        """PIDs of the service's child processes (its nsjails), zombies included."""
        pids = []
        try:
            tasks = os.listdir(f"/proc/{self.pid}/task")
        except OSError:
            return pids
        for task in tasks:
            try:
                with open(f"/proc/{self.pid}/task/{task}/children") as f:
                    pids.extend(int(p) for p in f.read().split())
            except OSError:
                pass
        return pids

    def quiet(self):
        """No execution running, no jail starting or dying (the service's only children are its
        ready pooled jails), and every flavour of the pool stocked."""
        h = self.health()
        zygotes = h.get("zygotes")
        if zygotes is not None:
            # Zygote mode: the service's only children are its ready zygotes' nsjails (the chart
            # flavour's starts on demand), plain and data among them.
            return (
                h["slots"]["in_use"] == 0
                and h["slots"]["waiting"] == 0
                and zygotes.get("plain") is True
                and zygotes.get("data") is True
                and len(self.children()) == sum(1 for ready in zygotes.values() if ready)
            )
        ready = h.get("pool", {}).get("ready", {})
        return (
            h["slots"]["in_use"] == 0
            and h["slots"]["waiting"] == 0
            and len(self.children()) == sum(ready.values())
            # The chart flavour is stocked only once a script has asked for it.
            and all(n > 0 for flavour, n in ready.items() if flavour != "chart")
        )

    def settle(self, calm=0.05, timeout=15.0):
        """Waits until the server has been quiet for `calm` seconds. After a burst, `calm` must
        outlast the refill loop's nap (up to 0.5 s when it last found every slot busy)."""
        deadline = time.perf_counter() + timeout
        quiet_since = None
        while time.perf_counter() < deadline:
            now = time.perf_counter()
            if self.quiet():
                quiet_since = quiet_since or now
                if now - quiet_since >= calm:
                    return True
            else:
                quiet_since = None
            time.sleep(0.025)
        return False

    def ready(self, flavour):
        return self.health().get("pool", {}).get("ready", {}).get(flavour, 0)

    def rss_kib(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        if self._health is not None:
            self._health.close()
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            except ProcessLookupError:
                pass


# --- HTTP ----------------------------------------------------------------------------------


class Connection:
    """A persistent HTTP/1.1 connection; reopened (outside the timed part) if the server closed it."""

    def __init__(self, port):
        self.port = port
        self.conn = None

    def _open(self):
        if self.conn is not None and self.conn.sock is not None:
            readable, _, _ = select.select([self.conn.sock], [], [], 0)
            if readable:  # an idle keep-alive connection only becomes readable when closed
                self.close()
        if self.conn is None or self.conn.sock is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            self.conn.connect()
            self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def request(self, method, path, body=None, retry=True):
        """(status, body bytes, seconds); the time covers sending the request to the last byte.
        A request that fails on a connection the server closed meanwhile is sent again once."""
        headers = {"Content-Type": "application/json"} if body is not None else {}
        for attempt in (0, 1) if retry else (1,):
            self._open()
            started = time.perf_counter()
            try:
                self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
            except (http.client.HTTPException, OSError):
                self.close()
                if attempt:
                    raise
                continue
            took = time.perf_counter() - started
            if response.will_close:
                self.close()
            return response.status, data, took
        raise AssertionError("unreachable")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def abort(self):
        """Cuts the connection under a thread waiting on it (the service then drops its request)."""
        conn = self.conn
        if conn is not None and conn.sock is not None:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def execute_body(name):
    return json.dumps({"script": SCRIPTS[name]}).encode()


def percentile(values, q):
    """Linear interpolation between closest ranks (q in 0..100)."""
    data = sorted(values)
    if not data:
        return float("nan")
    k = (len(data) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


def settle_all(servers, calm=0.05):
    for s in servers:
        if not s.settle(calm):
            log(f"warning: {s.name} server did not settle within 15 s")


# --- measurements --------------------------------------------------------------------------


def sequential(servers, name, count, warmup, gap):
    """Alternating requests, one at a time, each after both servers have settled."""
    body = execute_body(name)
    flavour = FLAVOUR[name]
    conns = {s.name: Connection(s.port) for s in servers}
    latencies = {s.name: [] for s in servers}
    warm_hits = {s.name: 0 for s in servers}
    failures = {s.name: 0 for s in servers}
    try:
        for i in range(warmup + count):
            order = servers if i % 2 == 0 else list(reversed(servers))
            for s in order:
                settle_all(servers)
                time.sleep(gap)
                had_ready = s.pool and s.ready(flavour) > 0
                status, data, took = conns[s.name].request("POST", "/execute", body)
                if i < warmup:
                    continue
                if check_answer(name, status, data):
                    latencies[s.name].append(took)
                    warm_hits[s.name] += had_ready
                else:
                    failures[s.name] += 1
                    log(f"{s.name}/{name}: unexpected answer {status}: {data[:200]!r}")
    finally:
        for c in conns.values():
            c.close()
    return {
        s.name: {
            "p50": percentile(latencies[s.name], 50),
            "p90": percentile(latencies[s.name], 90),
            "n": len(latencies[s.name]),
            "warm": warm_hits[s.name],
            "failures": failures[s.name],
        }
        for s in servers
    }


def closed_loop(server, name, clients, ramp, window, slots):
    """`clients` threads, each sending the next request as soon as the last is answered.

    All clients start together, so the first executions (as many as there are slots) run as
    one batch and end close together, seconds later for pandas under load. The measured window
    starts once that first batch has answered (and at least `ramp` seconds in), so it opens
    just as the next executions start, for both servers alike, and lasts `window` seconds;
    what completes in it is counted. At its end the connections are cut rather than waited on
    (the service drops the requests): with 16 clients and slow scripts the queue would take
    many seconds to drain, and nothing answered after the window counts anyway."""
    body = execute_body(name)
    conns = [Connection(server.port) for _ in range(clients)]
    for c in conns:
        c._open()
    start = time.perf_counter() + 0.05
    records = [[] for _ in range(clients)]
    stopping = threading.Event()
    first_batch = min(clients, slots)
    answered = threading.Semaphore(0)
    failures = []

    def client(i):
        while time.perf_counter() < start:
            time.sleep(0.001)
        while not stopping.is_set():
            try:
                status, data, _ = conns[i].request("POST", "/execute", body, retry=False)
                outcome = "ok" if check_answer(name, status, data) else ("429" if status == 429 else "error")
                if outcome == "error" and not stopping.is_set():
                    failures.append(f"{status}: {data[:200]!r}")
            except (http.client.HTTPException, OSError) as e:
                outcome = "error"
                if not stopping.is_set():
                    failures.append(repr(e))
            records[i].append((time.perf_counter(), outcome))
            answered.release()
            if outcome != "ok":
                time.sleep(0.01)  # do not spin on refusals

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    for _ in range(first_batch):
        answered.acquire(timeout=60)
    window_start = max(start + ramp, time.perf_counter())
    window_end = window_start + window
    time.sleep(max(0.0, window_end - time.perf_counter()))
    stopping.set()
    for c in conns:
        c.abort()
    for t in threads:
        t.join()
    for c in conns:
        c.close()
    if failures:
        log(f"{server.name}/{name}/{clients} clients: {len(failures)} failures, first: {failures[0]}")
    counts = {"ok": 0, "429": 0, "error": 0}
    for rec in records:
        for done, outcome in rec:
            if window_start < done <= window_end:
                counts[outcome] += 1
    return counts


def throughput(servers, name, clients, ramp, window):
    """ABBA slices (off, on, on, off): each server gets two slices of `window` / 2 measured
    seconds, each after both servers have settled, so a drift in background load falls on
    both alike."""
    totals = {s.name: {"ok": 0, "429": 0, "error": 0} for s in servers}
    for s in servers + list(reversed(servers)):
        settle_all(servers, calm=0.7)
        counts = closed_loop(s, name, clients, ramp, window / 2, s.health()["slots"]["capacity"])
        for k, v in counts.items():
            totals[s.name][k] += v
    return {n: dict(t, rps=t["ok"] / window) for n, t in totals.items()}


def cold_starts(starts, setups):
    """Exec of the binary to the first successful /execute answer, for each of `setups`
    ({label: environment}), taking turns (in reversed order every other round)."""
    body = execute_body("hello")
    results = {label: [] for label in setups}
    listening = {label: [] for label in setups}
    probe = {label: [] for label in setups}
    for i in range(starts):
        order = list(setups.items()) if i % 2 == 0 else list(reversed(setups.items()))
        for label, env in order:
            server = Server(f"cold-start-{label}", env)
            try:
                server.wait_listening()
                conn = Connection(server.port)
                status, data, _ = conn.request("POST", "/execute", body)
                done = time.perf_counter()
                conn.close()
                if not check_answer("hello", status, data):
                    raise RuntimeError(f"cold start ({label}): unexpected answer {status}: {data[:200]!r}")
                results[label].append(done - server.started_at)
                listening[label].append(server.listening_at - server.started_at)
                probe[label].append((server.probe_ms or 0) / 1000)
            finally:
                server.stop()
            time.sleep(0.2)
    return {
        k: {
            "median": statistics.median(v),
            "listening": statistics.median(listening[k]),
            "probe": statistics.median(probe[k]),
            "first": statistics.median(done - up for done, up in zip(v, listening[k])),
        }
        for k, v in results.items()
    }


def cgroup_parent(pid):
    """The service's jails' parent memory cgroup, `python-executor-[<pid namespace>-]<pid>`
    under the service's own cgroup: (directory, usage file name), or None without cgroups."""
    mounts = []  # (fstype, mount point, root of the hierarchy it shows, options)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, rfields = left.split(), right.split()
            if len(rfields) >= 3:
                mounts.append((rfields[0], fields[4], fields[3], rfields[2].split(",")))
    with open(f"/proc/{pid}/cgroup") as f:
        own = [line.rstrip("\n").split(":", 2) for line in f]
    bases = []  # (directory of the service's cgroup, usage file)
    for hid, controllers, path in own:
        v2 = hid == "0" and controllers == ""
        if not v2 and "memory" not in controllers.split(","):
            continue
        for fstype, point, root, options in mounts:
            if (v2 and fstype == "cgroup2") or (not v2 and fstype == "cgroup" and "memory" in options):
                relative = path[len(root):] if root != "/" and path.startswith(root) else path
                base = Path(point) / relative.lstrip("/")
                usage = "memory.current" if v2 else "memory.usage_in_bytes"
                bases += [(base, usage), (base.parent, usage)]  # v2: the service may sit in a leaf

    def named(directory):
        rest = directory.name[len("python-executor-"):]
        return directory.name.startswith("python-executor-") and (
            rest == str(pid) or (rest.endswith(f"-{pid}") and rest[: -len(str(pid)) - 1].isdigit())
        )

    for base, usage in bases:
        try:
            for entry in base.iterdir():
                if entry.is_dir() and named(entry) and (entry / usage).exists():
                    return entry, usage
        except OSError:
            continue
    return None


def process_memory_kib(pid):
    """(PSS, RSS) in KiB of one process."""
    pss = rss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
                elif line.startswith("Rss:"):
                    rss = int(line.split()[1])
    except OSError:
        pass
    return pss, rss


def jail_memory(server):
    """Per flavour: list of (cgroup usage bytes or None, PSS KiB, RSS KiB) of each ready jail."""
    found = cgroup_parent(server.pid)
    jails = {}
    if found:
        parent, usage_file = found
        for jail in sorted(parent.glob("jail-*")):
            try:
                usage = int((jail / usage_file).read_text())
                pids = [int(p) for p in (jail / "cgroup.procs").read_text().split()]
            except (OSError, ValueError):
                continue
            jails[jail.name] = (usage, pids)
    else:  # no cgroups: each child nsjail and its descendants
        for child in server.children():
            pids = [child]
            try:
                pids += [int(p) for p in Path(f"/proc/{child}/task/{child}/children").read_text().split()]
            except OSError:
                pass
            jails[str(child)] = (None, pids)
    by_flavour = {}
    for usage, pids in jails.values():
        flavour = "plain"
        pss = rss = 0
        for pid in pids:
            try:
                args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            # The runner's last arguments: "warm" (or "cold"), then the modules it preloads.
            marks = [i for i, a in enumerate(args) if a in (b"warm", b"cold")]
            if marks and any(args[marks[-1] + 1 :]):
                flavour = "data"
            p, r = process_memory_kib(pid)
            pss, rss = pss + p, rss + r
        by_flavour.setdefault(flavour, []).append((usage, pss, rss))
    return by_flavour, found is not None


def timed_runs(argv, count):
    times = []
    for _ in range(count):
        started = time.perf_counter()
        result = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        times.append(time.perf_counter() - started)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:3])} ... failed ({result.returncode}): {result.stderr[-500:]!r}")
    return statistics.median(times)


def floor(count, pandas_count):
    env = server_env({})
    # Not resolved: the virtualenv's python3 is a symlink out of it.
    venv = Path(os.path.abspath(Path(env["SANDBOX_PYTHON"]).parent.parent))
    jail = [
        env["NSJAIL_PATH"], "--config", env["NSJAIL_CONFIG"],
        "--user", "65534:65534:1", "--group", "65534:65534:1",
        "--bindmount_ro", f"{venv}:/opt/venv", "--", "/opt/venv/bin/python3", "-I", "-c",
    ]  # fmt: skip
    bare = [str(venv / "bin" / "python3"), "-I", "-c"]
    return {
        "nsjail": timed_runs(jail + ["pass"], count),
        "bare": timed_runs(bare + ["pass"], count),
        "nsjail_pandas": timed_runs(jail + ["import pandas"], pandas_count),
        "bare_pandas": timed_runs(bare + ["import pandas"], pandas_count),
    }


def busy_seconds():
    """Machine-wide busy CPU time so far (every CPU's user, nice, system, irq, softirq, steal)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def cpu_per_execution(servers, server, name, count, baseline=1.0):
    """Machine-wide CPU seconds per execution on `server`: busy time over `count` sequential
    requests and the settling after them (a pool's refills included), minus the machine's busy
    rate measured over `baseline` seconds just before (other users of a shared machine)."""
    body = execute_body(name)
    settle_all(servers, calm=0.3)
    b0, t0 = busy_seconds(), time.perf_counter()
    time.sleep(baseline)
    rate = (busy_seconds() - b0) / (time.perf_counter() - t0)
    conn = Connection(server.port)
    failures = 0
    try:
        m0, s0 = busy_seconds(), time.perf_counter()
        for _ in range(count):
            status, data, _ = conn.request("POST", "/execute", body)
            failures += not check_answer(name, status, data)
        settle_all(servers, calm=0.3)
        spent = busy_seconds() - m0 - rate * (time.perf_counter() - s0)
    finally:
        conn.close()
    return spent / count, failures


CPUACCT = Path("/sys/fs/cgroup/cpuacct")


def cpuacct_group(name):
    """A cgroup v1 cpuacct group of its own for one server (and so for everything it starts:
    the service moves its jails into memory, pids and cpu groups, never cpuacct), or None where
    there is no such hierarchy or no right to make one."""
    group = CPUACCT / f"python-executor-bench-{os.getpid()}-{name}"
    try:
        group.mkdir(exist_ok=True)
        (group / "cpuacct.usage").read_text()
        return group
    except OSError:
        return None


def cpu_per_execution_cgroup(servers, server, name, count):
    """CPU seconds per execution that `server` and everything it started used (its cpuacct
    group): over `count` sequential requests and the settling after them. Other users of the
    machine do not count, unlike in the /proc/stat figure."""
    usage = server.cpuacct / "cpuacct.usage"
    body = execute_body(name)
    settle_all(servers, calm=0.3)
    conn = Connection(server.port)
    try:
        u0 = int(usage.read_text())
        for _ in range(count):
            conn.request("POST", "/execute", body)
        settle_all(servers, calm=0.3)
        return (int(usage.read_text()) - u0) / 1e9 / count
    finally:
        conn.close()


def descendants(pid):
    """`pid` and every process below it."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                queue += [int(p) for p in Path(f"/proc/{current}/task/{task}/children").read_text().split()]
            except OSError:
                pass
    return found


def idle(servers, seconds):
    """Each server settled, everything it keeps ready: (PSS MiB of all its processes, their
    count, CPU share of one CPU over `seconds` from its cpuacct group or None)."""
    settle_all(servers, calm=0.7)
    memory = {}
    for s in servers:
        pids = descendants(s.pid)
        memory[s.name] = (sum(process_memory_kib(p)[0] for p in pids) / 1024, len(pids))
    before = {s.name: int((s.cpuacct / "cpuacct.usage").read_text()) for s in servers if s.cpuacct}
    began = time.perf_counter()
    time.sleep(seconds)
    took = time.perf_counter() - began
    result = {}
    for s in servers:
        cpu = None
        if s.cpuacct:
            cpu = (int((s.cpuacct / "cpuacct.usage").read_text()) - before[s.name]) / 1e9 / took
        result[s.name] = memory[s.name] + (cpu,)
    return result


STRATEGIES = (("zygote", "zygote"), ("pool", "pool"), ("cold", "cold"))


def strategies_main(args, info):
    """Zygote, pool and cold side by side (see the module's docstring)."""
    servers = []
    try:
        log("starting three servers: SANDBOX_STRATEGY=zygote, pool and cold")
        for name, strategy in STRATEGIES:
            servers.append(Server(name, {"SANDBOX_STRATEGY": strategy}, cpuacct_group(name)))
        for s in servers:
            s.wait_listening()
        zygote, pool, cold = servers
        for s in servers:
            strategy = s.health().get("strategy")
            if strategy != s.name:
                raise RuntimeError(f"the {s.name} server runs the {strategy!r} strategy")
        info.append(("isolation", zygote.health().get("isolation", {}).get("summary", "?")))
        log(f"idle: memory, and CPU over {args.idle:.0f} s")
        resting = idle(servers, args.idle)
        seq, cpu = {}, {}
        for name in ("hello", "pandas"):
            log(f"sequential latency: {name}")
            seq[name] = sequential(servers, name, args.requests, args.warmup, args.gap)
            for s in servers:
                log(f"CPU per execution: {name} on {s.name}")
                cpu[(name, s.name)] = cpu_per_execution(servers, s, name, args.cpu_requests)
                if s.cpuacct is not None:
                    cpu[(name, s.name, "cgroup")] = cpu_per_execution_cgroup(servers, s, name, args.cpu_requests)
        tput = {}
        for name in ("hello", "pandas"):
            log(f"throughput: {name}, 16 clients")
            tput[name] = throughput([zygote, pool], name, 16, args.ramp, args.window)
    finally:
        for s in servers:
            s.stop()
            if s.cpuacct is not None:
                try:
                    s.cpuacct.rmdir()
                except OSError:
                    pass
    errors = [f"{s.name}: {line}" for s in servers for line in s.errors]
    log("cold starts")
    starts = cold_starts(args.starts, {"zygote": {"SANDBOX_STRATEGY": "zygote"}, "pool": {"SANDBOX_STRATEGY": "pool"}})
    info.append(("load average at end", " ".join(f"{x:.2f}" for x in os.getloadavg())))
    out = machine_table("python-executor benchmark: zygote vs pool vs cold", info)
    w = out.append
    w("")
    w(f"Sequential p50/p90 over {args.requests} requests each (alternating, all settled before each); "
      f"CPU per execution over {args.cpu_requests} sequential requests and the settling after them: "
      "machine-wide busy time from /proc/stat minus the machine's busy rate just before (noisy on a shared "
      "machine), and the server's own cpuacct group (its zygotes, jails and refills, nobody else's); "
      "throughput: 16 closed-loop clients, ABBA slices, zygote vs pool.")
    w("")
    w("| script | server | p50 (ms) | p90 (ms) | CPU per execution, /proc/stat (ms) | CPU per execution, the server's cpuacct group (ms) | req/s at 16 clients (answers) | failures |")
    w("|---|---|---:|---:|---:|---:|---:|---:|")
    for name in ("hello", "pandas"):
        for s in servers:
            r = seq[name][s.name]
            c, cfail = cpu[(name, s.name)]
            t = tput[name].get(s.name)
            rate = f"{t['rps']:.2f} ({t['ok']})" if t else "–"
            fails = r["failures"] + cfail + (t["error"] if t else 0)
            own = cpu.get((name, s.name, "cgroup"))
            own = ms(own) if own is not None else "–"
            w(f"| {name} | {s.name} | {ms(r['p50'])} | {ms(r['p90'])} | {ms(c)} | {own} | {rate} | {fails} |")
    w("")
    w(f"| idle, everything ready | zygote | pool | cold |")
    w("|---|---:|---:|---:|")
    w("| memory: PSS of all its processes (MiB) | " + " | ".join(f"{resting[n][0]:.1f}" for n, _ in STRATEGIES) + " |")
    w("| processes | " + " | ".join(str(resting[n][1]) for n, _ in STRATEGIES) + " |")
    w(f"| CPU over {args.idle:.0f} s (% of one CPU) | " + " | ".join(
        f"{resting[n][2] * 100:.2f}" if resting[n][2] is not None else "–" for n, _ in STRATEGIES) + " |")
    w("")
    w(f"| cold start (median of {args.starts}) | zygote | pool |")
    w("|---|---:|---:|")
    w("| exec → listening (ms) | " + " | ".join(ms(starts[n]["listening"]) for n in ("zygote", "pool")) + " |")
    w("| exec → first hello answered (ms) | " + " | ".join(ms(starts[n]["median"]) for n in ("zygote", "pool")) + " |")
    w("")

    def ratio(a, b):
        return a / b if b else float("nan")

    rows = []
    if ("hello", "zygote", "cgroup") in cpu:
        for name, target in (("hello", 0.005), ("pandas", 0.020)):
            got = cpu[(name, "zygote", "cgroup")]
            rows.append((f"CPU per execution, zygote, {name} (cpuacct)", f"{ms(got)} ms", f"≤ {ms(target)} ms", got <= target))
    for name, target in (("hello", 4), ("pandas", 8)):
        got = ratio(tput[name]["zygote"]["rps"], tput[name]["pool"]["rps"])
        rows.append((f"{name} throughput at 16 clients, zygote / pool", f"{got:.2f}", f"≥ {target}", got >= target))
    for name, target in (("hello", 0.15), ("pandas", 0.03)):
        got = ratio(seq[name]["zygote"]["p50"], seq[name]["cold"]["p50"])
        rows.append((f"{name} p50, zygote / cold", f"{got:.3f} ({ms(seq[name]['zygote']['p50'])} / {ms(seq[name]['cold']['p50'])} ms)",
                     f"≤ {target}", got <= target))
    rows.append(("idle memory, zygote (PSS, all processes)", f"{resting['zygote'][0]:.1f} MiB", "≤ 150 MiB", resting["zygote"][0] <= 150))
    if resting["zygote"][2] is not None:
        rows.append((f"idle CPU, zygote, over {args.idle:.0f} s", f"{resting['zygote'][2] * 100:.2f} %", "≤ 1 %", resting["zygote"][2] <= 0.01))
    rows.append(("cold start, exec → first hello answered, zygote", f"{ms(starts['zygote']['median'])} ms", "≤ 100 ms",
                 starts["zygote"]["median"] <= 0.1))
    w("| issue 12 goal | measured | target | |")
    w("|---|---:|---|---|")
    for what, got, target, ok in rows:
        w(f"| {what} | {got} | {target} | {met(ok)} |")
    w("")
    out += errors_section(errors)
    text = "\n".join(out)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text + "\n")
    print(text)
    log(f"written to {output}")


# --- report --------------------------------------------------------------------------------


def ms(seconds):
    return f"{seconds * 1000:.1f}"


def mib(value, unit=1):
    return f"{value * unit / MIB:.1f}"


def met(ok):
    return "**met**" if ok else "**not met**"


def errors_section(errors):
    """A report's lines for what the services logged as errors (none if they logged none)."""
    if not errors:
        return []
    return ["## Errors the services logged (the numbers above may be off)", ""] + [f"- `{line[:400]}`" for line in errors] + [""]


def machine_table(title, info):
    """A report's first lines: its title and the machine it ran on."""
    return [f"# {title}", "", "| machine | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in info]


def report(info, seq, tput, cold, memory, floors, args, errors):
    out = machine_table("python-executor benchmark: pool off (SANDBOX_STRATEGY=cold) vs pool on (SANDBOX_STRATEGY=pool)", info)
    w = out.append
    w("")
    w(f"## Sequential latency (ms; {args.requests} requests each after {args.warmup} warm-up, alternating, "
      f"both servers settled + {int(args.gap * 1000)} ms before each)")
    w("")
    w("| script | off p50 | off p90 | on p50 | on p90 | on/off p50 | pool hits (on) |")
    w("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in seq.items():
        off, on = r["off"], r["on"]
        fails = f" ({off['failures']}+{on['failures']} failed)" if off["failures"] or on["failures"] else ""
        w(f"| {name}{fails} | {ms(off['p50'])} | {ms(off['p90'])} | {ms(on['p50'])} | {ms(on['p90'])} | "
          f"{on['p50'] / off['p50']:.3f} | {on['warm']}/{on['n']} |")
    w("")
    w(f"## Closed-loop throughput (successful requests/s over {args.window:g} s per server: ABBA slices of "
      f"{args.window / 2:g} s, each counted once its first batch (min(clients, slots) answers) is in and "
      f"{args.ramp:g} s have passed)")
    w("")
    w("| script | clients | off req/s (answers) | off 429 / err | on req/s (answers) | on 429 / err | on/off |")
    w("|---|---:|---:|---:|---:|---:|---:|")
    for (name, clients), r in tput.items():
        off, on = r["off"], r["on"]
        ratio = on["rps"] / off["rps"] if off["rps"] else float("nan")
        w(f"| {name} | {clients} | {off['rps']:.2f} ({off['ok']}) | {off['429']} / {off['error']} | "
          f"{on['rps']:.2f} ({on['ok']}) | {on['429']} / {on['error']} | {ratio:.2f} |")
    w("")
    w(f"## Cold start (ms, median of {args.starts}): exec to first successful /execute (hello)")
    w("")
    w("| pool | exec → first answer | exec → listening | of which the start-up probe (its log) | listening → first answer |")
    w("|---|---:|---:|---:|---:|")
    for label in ("off", "on"):
        c = cold[label]
        w(f"| {label} | {ms(c['median'])} | {ms(c['listening'])} | {ms(c['probe'])} | {ms(c['first'])} |")
    w("")
    w("## Memory")
    w("")
    w("| process | idle VmRSS after start (MiB) | idle VmRSS after the run (MiB) |")
    w("|---|---:|---:|")
    for label in ("off", "on"):
        w(f"| service, pool {label} | {mib(memory['rss_start'][label], 1024)} | {mib(memory['rss_end'][label], 1024)} |")
    w("")
    jails = memory["jails"]
    source = "cgroup memory usage" if memory["cgroups"] else "no cgroups (sum of processes)"
    w(f"Pooled jails of the pool-on server, idle after the run (median per jail; {source}; "
      "cgroup usage includes page cache first touched by the jail):")
    w("")
    w("| flavour | jails | cgroup usage (MiB) | PSS (MiB) | RSS (MiB) |")
    w("|---|---:|---:|---:|---:|")
    for flavour in ("plain", "data"):
        rows = jails.get(flavour, [])
        if not rows:
            w(f"| {flavour} | 0 | – | – | – |")
            continue
        usages = [u for u, _, _ in rows if u is not None]
        usage = mib(statistics.median(usages)) if usages else "–"
        w(f"| {flavour} | {len(rows)} | {usage} | {mib(statistics.median(p for _, p, _ in rows), 1024)} | "
          f"{mib(statistics.median(r for _, _, r in rows), 1024)} |")
    w("")
    w(f"## Floor (ms, median of {args.floor} / {args.floor_pandas} for `import pandas`)")
    w("")
    w("| command | nsjail (service's config) | without nsjail |")
    w("|---|---:|---:|")
    w(f"| `python3 -I -c pass` | {ms(floors['nsjail'])} | {ms(floors['bare'])} |")
    w(f"| `python3 -I -c 'import pandas'` | {ms(floors['nsjail_pandas'])} | {ms(floors['bare_pandas'])} |")
    w("")
    out += errors_section(errors)
    w("## Goals")
    w("")
    w("| goal | measured | target | |")
    w("|---|---:|---:|---|")
    hello_ratio = seq["hello"]["on"]["p50"] / seq["hello"]["off"]["p50"]
    pandas_ratio = seq["pandas"]["on"]["p50"] / seq["pandas"]["off"]["p50"]
    w(f"| hello p50, pool on / pool off | {hello_ratio:.3f} ({ms(seq['hello']['on']['p50'])} / "
      f"{ms(seq['hello']['off']['p50'])} ms) | ≤ 0.200 | {met(hello_ratio <= 0.2)} |")
    w(f"| pandas p50, pool on / pool off | {pandas_ratio:.3f} ({ms(seq['pandas']['on']['p50'])} / "
      f"{ms(seq['pandas']['off']['p50'])} ms) | ≤ 0.100 | {met(pandas_ratio <= 0.1)} |")
    top = max(args.clients)
    for name in ("hello", "pandas"):
        r = tput[(name, top)]
        ratio = r["on"]["rps"] / r["off"]["rps"] if r["off"]["rps"] else float("nan")
        w(f"| {name} throughput at {top} clients, pool on / pool off | {ratio:.2f} "
          f"({r['on']['rps']:.1f} / {r['off']['rps']:.1f} req/s) | ≥ 0.90 | {met(ratio >= 0.9)} |")
    w(f"| cold start, exec to first answer (default pool; pool off {ms(cold['off']['median'])} ms) | "
      f"{ms(cold['on']['median'])} ms | < 100 ms | {met(cold['on']['median'] < 0.1)} |")
    rss = max(memory["rss_start"]["on"], memory["rss_end"]["on"])
    w(f"| idle RSS of the service (default pool; after start / after the run) | "
      f"{mib(memory['rss_start']['on'], 1024)} / {mib(memory['rss_end']['on'], 1024)} MiB | < 15 MiB | "
      f"{met(rss * 1024 < 15 * MIB)} |")
    w("")
    return "\n".join(out)


def data_main(args, info):
    """The cost of an empty collect and of 1 MiB of files in (p50 differences against plain)."""
    hello = SCRIPTS["hello"]
    megabyte = "x" * MIB
    bodies = {
        "plain": json.dumps({"script": hello}).encode(),
        "empty collect": json.dumps({"script": hello, "collect": ["*.none"]}).encode(),
        "1 MiB of files in": json.dumps({"script": hello, "files": {"in.txt": megabyte}}).encode(),
    }
    # Jails started per request (POOL_SIZE=0): the server settles between requests, and what
    # data in and out add is paid inside the jail either way.
    server = Server("cold", {"SANDBOX_STRATEGY": "cold"})
    try:
        server.wait_listening()
        settle_all([server], calm=0.7)
        conn = Connection(server.port)
        took = {name: [] for name in bodies}
        for i in range(args.warmup + args.requests):
            for name, body in bodies.items():
                settle_all([server])
                time.sleep(args.gap)
                status, data, seconds = conn.request("POST", "/execute", body)
                if status != 200 or json.loads(data)["result"] != "hello":
                    raise SystemExit(f"bench: {name}: {status} {data[:200]!r}")
                if i >= args.warmup:
                    took[name].append(seconds)
        conn.close()
    finally:
        server.stop()
    p50 = {name: percentile(values, 50) for name, values in took.items()}
    lines = ["# python-executor: data in and out (make bench BENCH_ARGS=--data)", ""]
    lines += [f"- {k}: {v}" for k, v in info]
    lines += ["", f"p50 of {args.requests} requests each, interleaved, one jail per request (ms)", ""]
    lines += ["| request | p50 | cost over plain | target | |", "|---|---:|---:|---:|---|"]
    targets = {"empty collect": 2.0, "1 MiB of files in": 5.0}
    for name, value in p50.items():
        if name == "plain":
            lines.append(f"| {name} | {ms(value)} | | | |")
            continue
        cost = (value - p50["plain"]) * 1000
        lines.append(f"| {name} | {ms(value)} | {cost:.1f} | ≤ {targets[name]:.0f} | {met(cost <= targets[name])} |")
    text = "\n".join(lines) + "\n"
    out = REPO / "target" / "bench" / "data.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)


def git_describe():
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout.strip()
        return head + (" (+ uncommitted changes)" if dirty else "")
    except OSError:
        return "?"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=30, help="measured sequential requests per script and server")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured sequential requests first")
    parser.add_argument("--gap", type=float, default=0.05, help="seconds between sequential requests, after settling")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--window", type=float, default=5.0, help="measured throughput seconds per server and level (two slices)")
    parser.add_argument("--ramp", type=float, default=0.3, help="least unmeasured seconds at the start of a throughput run")
    parser.add_argument("--starts", type=int, default=5, help="cold starts per server setting")
    parser.add_argument("--floor", type=int, default=20, help="runs of the bare interpreter floor")
    parser.add_argument("--floor-pandas", type=int, default=3, help="runs of the `import pandas` floor")
    parser.add_argument("--output", default=str(REPO / "target" / "bench" / "latest.md"))
    parser.add_argument("--pool", action="store_true", help="pool on vs off instead (the older comparison)")
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of idle CPU measured")
    parser.add_argument("--data", action="store_true", help="the cost of an empty collect and of 1 MiB of files in (issue 13)")
    parser.add_argument("--cpu-requests", type=int, default=30, help="sequential requests per CPU measurement")
    args = parser.parse_args()
    if not BINARY.exists():
        sys.exit(f"bench: {BINARY} is missing: run `make bench` (it builds first)")

    # SIGINT, SIGTERM and SIGHUP all unwind through the finally blocks that stop the servers
    # (SIGINT too, even when started in the background with it ignored).
    def interrupted(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupted)

    began = time.perf_counter()
    info = [
        ("CPUs (os.cpu_count())", os.cpu_count()),
        ("date", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
        ("kernel", f"{platform.system()} {platform.release()} {platform.machine()}"),
        ("load average at start", " ".join(f"{x:.2f}" for x in os.getloadavg())),
        ("commit", git_describe()),
    ]
    if args.data:
        data_main(args, info)
        return
    if not args.pool:
        strategies_main(args, info)
        return
    servers = []
    try:
        log("starting two servers: pool off (SANDBOX_STRATEGY=cold) and pool on (SANDBOX_STRATEGY=pool)")
        off = Server("off", {"SANDBOX_STRATEGY": "cold"})
        servers.append(off)
        on = Server("on", {"SANDBOX_STRATEGY": "pool"})
        servers.append(on)
        for s in servers:
            s.wait_listening()
        h = on.health()
        info.append(("isolation", h.get("isolation", {}).get("summary", "?")))
        info.append(("slots, pool size per flavour", f"{h['slots']['capacity']}, {h.get('pool', {}).get('size_per_flavour')}"))
        settle_all(servers, calm=0.7)
        time.sleep(2)
        settle_all(servers, calm=0.7)
        memory = {"rss_start": {s.name: s.rss_kib() for s in servers}}

        seq = {}
        for name in ("hello", "pandas", "print"):
            log(f"sequential latency: {name}")
            seq[name] = sequential(servers, name, args.requests, args.warmup, args.gap)

        tput = {}
        for name in ("hello", "pandas"):
            for clients in args.clients:
                log(f"throughput: {name}, {clients} clients")
                tput[(name, clients)] = throughput(servers, name, clients, args.ramp, args.window)

        log("idle memory after the run")
        settle_all(servers, calm=0.7)
        time.sleep(2)
        settle_all(servers, calm=0.7)
        memory["rss_end"] = {s.name: s.rss_kib() for s in servers}
        memory["jails"], memory["cgroups"] = jail_memory(on)

        log("floor: python3 -c pass in nsjail and bare")
        floors = floor(args.floor, args.floor_pandas)
    finally:
        for s in servers:
            s.stop()
    errors = [f"{s.name}: {line}" for s in servers for line in s.errors]
    log("cold starts")
    cold = cold_starts(args.starts, {"off": {"SANDBOX_STRATEGY": "cold"}, "on": {"SANDBOX_STRATEGY": "pool"}})

    info.append(("load average at end", " ".join(f"{x:.2f}" for x in os.getloadavg())))
    info.append(("benchmark took", f"{time.perf_counter() - began:.0f} s"))
    text = report(info, seq, tput, cold, memory, floors, args, errors)
    output = Path(args.output).with_name("pool.md")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text + "\n")
    print(text)
    log(f"written to {output}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("bench: interrupted")
