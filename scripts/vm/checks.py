"""The checks `make vm-test` runs inside the VM against one running service (standard library
only; run as root in the VM, so it can read the service's cgroups).

    checks.py CHECK BASE_URL [CGROUP_DIR]

Each check prints one line per finding and exits 1 on failure. CGROUP_DIR: where the service's
jail cgroups are (its own cgroup v2 directory as the VM sees it).
"""

import glob
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request

TIMEOUT = 300  # software emulation: everything is 10-50x slower than on the host


def request(base, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data,
                                 headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, raw.decode("utf-8", "replace")


def execute(base, script, **extra):
    return request(base, "/execute", dict(script=script, **extra))


failures = []


def check(name, ok, detail):
    print(f"checks: {'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)
    if not ok:
        failures.append(name)


def health(base):
    status, body = request(base, "/health")
    check("health", status == 200 and isinstance(body, dict) and body.get("status") == "ok", f"HTTP {status}")
    return body if isinstance(body, dict) else {}


def read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def jail_dirs(cgroup_dir):
    return sorted(glob.glob(os.path.join(cgroup_dir, "**", "python-executor-*", "jail-*"), recursive=True))


def parents(cgroup_dir):
    return sorted(glob.glob(os.path.join(cgroup_dir, "**", "python-executor-*"), recursive=True))


def events(path):
    text = read(path) or ""
    return {k: int(v) for k, v in (line.split() for line in text.splitlines() if line.strip())}


# ---- cgroup v2, for real: the jails' limits, the OOM kill of a whole jail, the pids limit ----

SLEEPER = "import time\ndef main():\n    time.sleep(4)\n    return 'slept'\n"
OOM_GROUP = '''
import os, time
def main():
    # A bystander in the same jail: memory.oom.group must take it down with the hog.
    if os.fork() == 0:
        time.sleep(600)
        os._exit(0)
    hog = []
    while True:
        hog.append(bytearray(8 << 20))
        for i in range(0, len(hog[-1]), 4096):
            hog[-1][i] = 1
'''
FORK_BOMB = '''
import os, time
def main():
    forked = 0
    try:
        while True:
            if os.fork() == 0:
                time.sleep(6)
                os._exit(0)
            forked += 1
    except OSError as e:
        time.sleep(2)  # the children stay: the host sees the jail at its limit
        return {"forked": forked, "error": e.strerror}
'''


def cgroup_v2(base, cgroup_dir):
    h = health(base)
    limits = h.get("limits", {})
    iso = h.get("isolation", {})
    check("cgroup v2 in force", iso.get("cgroup") == "v2" and iso.get("user_namespace") is True,
          f"isolation {iso.get('summary')!r}, resource limits {iso.get('resource_limits')!r}")
    # A jail serving a request, seen from the host while its script sleeps.
    result = {}
    t = threading.Thread(target=lambda: result.update(r=execute(base, SLEEPER)))
    t.start()
    busy = found = None
    files = ("memory.max", "memory.swap.max", "memory.oom.group", "pids.max", "pids.current", "cpu.max", "cpu.weight")
    deadline = time.time() + 120
    while time.time() < deadline and busy is None and t.is_alive():
        for d in jail_dirs(cgroup_dir):
            # A jail at the normal CPU weight (serving, or handed out; warm pool jails wait at
            # weight 1), read whole (a jail that ends meanwhile loses its files).
            snapshot = {f: read(os.path.join(d, f)) for f in files}
            if snapshot["cpu.weight"] == "100" and None not in snapshot.values():
                busy, found = d, snapshot
                break
        time.sleep(0.1)
    t.join()
    check("a request ran", result.get("r", (0, None))[0] == 200, f"{result.get('r')}")
    if busy is None:
        check("jail cgroup", False, f"no serving jail cgroup found under {cgroup_dir}")
        return
    want_memory = str(limits.get("memory_mb", 0) * 1024 * 1024)
    check("jail cgroup limits",
          found["memory.max"] == want_memory and found["memory.oom.group"] == "1"
          and found["pids.max"] == str(limits.get("max_processes")) and (found["cpu.max"] or "max").split()[0] != "max",
          f"{busy}: {found}")
    parent = os.path.dirname(busy)
    controllers = read(os.path.join(parent, "cgroup.subtree_control"))
    check("controllers delegated to jails", set((controllers or "").split()) >= {"memory", "pids", "cpu"},
          f"{parent}/cgroup.subtree_control: {controllers!r}")

    # The OOM kill of a whole jail: memory.events (hierarchical) counts an oom_group_kill.
    before = events(os.path.join(parent, "memory.events"))
    status, body = execute(base, OOM_GROUP)
    after = events(os.path.join(parent, "memory.events"))
    kind = body.get("kind") if isinstance(body, dict) else body
    check("out-of-memory kill of the whole jail",
          status == 400 and kind == "memory_limit" and after.get("oom_group_kill", 0) > before.get("oom_group_kill", 0),
          f"HTTP {status} kind={kind}; {parent}/memory.events oom_group_kill "
          f"{before.get('oom_group_kill')} -> {after.get('oom_group_kill')}, oom_kill {before.get('oom_kill')} -> {after.get('oom_kill')}")

    # The pids limit: a fork bomb stops at pids.max, and the jail's pids.events counts the
    # forks the cgroup refused (not RLIMIT_NPROC).
    peak = {"pids": 0, "refused": 0}
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            for d in jail_dirs(cgroup_dir):
                p = read(os.path.join(d, "pids.current"))
                if p and p.isdigit():
                    peak["pids"] = max(peak["pids"], int(p))
                peak["refused"] = max(peak["refused"], events(os.path.join(d, "pids.events")).get("max", 0))
            time.sleep(0.05)

    w = threading.Thread(target=watch)
    w.start()
    status, body = execute(base, FORK_BOMB)
    stop.set()
    w.join()
    forked = body.get("result", {}) if isinstance(body, dict) else {}
    max_processes = limits.get("max_processes")
    check("pids limit", status == 200 and isinstance(forked, dict) and forked.get("forked", 0) > 0
          and peak["refused"] > 0 and peak["pids"] <= max_processes,
          f"HTTP {status} {forked}; peak pids.current {peak['pids']} (pids.max {max_processes}), "
          f"forks refused by the cgroup (pids.events max): {peak['refused']}")
    status, body = execute(base, "def main():\n    return 'still serving'\n")
    check("still serving", status == 200 and body.get("result") == "still serving", f"HTTP {status} {body}")


def cleaned(cgroup_dir):
    """After the service stopped: no jail cgroup, no parent, no process left under its cgroup."""
    left = parents(cgroup_dir)
    procs = []
    for d, _, _ in os.walk(cgroup_dir):
        procs += (read(os.path.join(d, "cgroup.procs")) or "").split()
    check("every cgroup removed after the service stopped", not left and not procs,
          f"parents left: {left}, processes left: {procs}")


# ---- hostile cases against any service (native or in Docker) ----

MEMORY_BOMB = '''
def main():
    hog = []
    while True:
        hog.append(b"x" * (32 << 20))
'''
FORK_BOMB_LOOSE = '''
import os
def main():
    while True:
        try:
            os.fork()
        except OSError:
            pass
'''
FLOOD = '''
import sys
def main():
    line = "x" * 1023 + "\\n"
    for _ in range(20 * 1024):
        sys.stdout.write(line)
    return "flooded"
'''

# Loopback sockets with the largest buffers, filled and never read: bytes held outside the
# heap, which the jail's memory limit must bound (v2 counts them in memory.max).
SOCKET_BUFFERS = '''
import socket
def main():
    big = 4 << 20
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    held, pairs = 0, []
    for i in range(80):
        c = socket.socket()
        c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, big)
        c.connect(listener.getsockname())
        s, _ = listener.accept()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, big)
        c.setblocking(False)
        while True:
            try:
                held += c.send(b"x" * (1 << 20))
            except BlockingIOError:
                break
        pairs.append((c, s))
    return held
'''


def hostile(base):
    h = health(base)
    limits = h.get("limits", {})
    status, body = execute(base, MEMORY_BOMB)
    kind = body.get("kind") if isinstance(body, dict) else body
    check("memory bomb", status == 400 and kind == "memory_limit", f"HTTP {status} kind={kind}")
    status, body = execute(base, FORK_BOMB_LOOSE, timeout_seconds=5)
    kind = body.get("kind") if isinstance(body, dict) else body
    check("fork bomb", status == 400 and kind in ("timeout", "exited", "memory_limit"), f"HTTP {status} kind={kind}")
    # Lowered per-request limits: too small for Python to start, a hog under a small one, a
    # hello under a small one.
    status, body = execute(base, "def main():\n    return 1\n", memory_mb=1)
    kind = body.get("kind") if isinstance(body, dict) else body
    check("memory_mb 1", status == 400 and kind == "memory_limit" and body.get("limit_mb") == 1, f"HTTP {status} {json.dumps(body)[:200]}")
    status, body = execute(base, "def main():\n    return len(bytearray(100 * 1024 * 1024))\n", memory_mb=48)
    kind = body.get("kind") if isinstance(body, dict) else body
    check("memory_mb 48, 100 MiB asked for", status == 400 and kind == "memory_limit", f"HTTP {status} kind={kind}")
    status, body = execute(base, "def main():\n    return 'small'\n", memory_mb=32)
    check("memory_mb 32, hello", status == 200 and isinstance(body, dict) and body.get("result") == "small", f"HTTP {status} {json.dumps(body)[:200]}")
    status, body = execute(base, SOCKET_BUFFERS, memory_mb=64)
    held = body.get("result") if isinstance(body, dict) else None
    kind = body.get("kind") if isinstance(body, dict) else body
    ok = (status == 200 and isinstance(held, int) and (1 << 20) < held < (128 << 20)) or (status == 400 and kind == "memory_limit")
    check("socket buffers under memory_mb 64", ok, f"HTTP {status} held={held} kind={kind}")
    status, body = execute(base, FLOOD)
    ok = status == 200 and isinstance(body, dict) and body.get("result") == "flooded" and body.get("stdout_truncated") is True
    size = len(body.get("stdout", "")) if isinstance(body, dict) else 0
    check("output flood", ok and size <= limits.get("max_output_bytes", 0),
          f"HTTP {status}, 20 MiB printed, {size} bytes returned, truncated={body.get('stdout_truncated') if isinstance(body, dict) else None}")
    status, body = execute(base, "def main():\n    return 'still serving'\n")
    check("still serving after the attacks", status == 200 and isinstance(body, dict) and body.get("result") == "still serving",
          f"HTTP {status}")


def seed_case(base):
    seed = ('import pandas as pd\nimport numpy as np\n\ndef main():\n    print("Analyzing...")\n'
            '    df = pd.DataFrame({"x": np.arange(1, 8), "y": np.arange(1, 8) * 2})\n'
            '    return {"status": "success", "value": int(df["x"].sum() + df["y"].sum()) // 2 - 0}\n')
    status, body = execute(base, seed)
    check("seed pandas script", status == 200 and body == {"result": {"status": "success", "value": 42}, "stdout": "Analyzing...\n"},
          f"HTTP {status} {json.dumps(body)[:200]}")


def smoke(base, pandas):
    """The contract's basic cases (verify-deployment.sh covers shape, uid, network, root, memory)."""
    if pandas:
        seed_case(base)
    cases = [
        ("syntax error", "def main(:\n", 400, "syntax_error"),
        ("missing main", "x = 1\n", 400, "missing_main"),
        ("runtime error", "def main():\n    raise ValueError('boom')\n", 400, "runtime_error"),
        ("timeout", "import time\ndef main():\n    time.sleep(30)\n", 400, "timeout"),
    ]
    for name, script, want_status, want_kind in cases:
        extra = {"timeout_seconds": 2} if name == "timeout" else {}
        status, body = execute(base, script, **extra)
        kind = body.get("kind") if isinstance(body, dict) else body
        check(name, status == want_status and kind == want_kind, f"HTTP {status} kind={kind}")


def main(argv):
    what, base = argv[0], argv[1].rstrip("/")
    if what == "cgroup-v2":
        cgroup_v2(base, argv[2])
    elif what == "cleaned":
        cleaned(argv[2])
    elif what == "hostile":
        hostile(base)
    elif what == "smoke":
        smoke(base, pandas=True)
    elif what == "smoke-no-pandas":
        smoke(base, pandas=False)
    elif what == "health":
        h = health(base)
        print("health: " + json.dumps({"isolation": h.get("isolation"), "max_concurrent": h.get("limits", {}).get("max_concurrent"),
                                        "memory_mb": h.get("limits", {}).get("memory_mb"), "strategy": h.get("strategy"),
                                        "zygotes": h.get("zygotes")}, sort_keys=True), flush=True)
    else:
        raise SystemExit(f"unknown check {what}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
