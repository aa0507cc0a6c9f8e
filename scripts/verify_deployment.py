"""The checks of scripts/verify-deployment.sh (see there). Standard library only."""

import argparse
import json
import sys
import urllib.error
import urllib.request

KNOWN = ("user_namespace", "cgroup", "seccomp")


def parse_args(argv):
    p = argparse.ArgumentParser(prog="verify-deployment.sh")
    p.add_argument("base_url")
    p.add_argument("--require", default=",".join(KNOWN),
                   help="comma-separated: " + ", ".join(KNOWN) + " (default: all)")
    p.add_argument("--token", help="sent as Authorization: Bearer")
    p.add_argument("--api-token", help="the service's API_TOKEN (the --token then goes in X-Serverless-Authorization)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per request (default 120)")
    args = p.parse_args(argv)
    args.require = [r.strip() for r in args.require.split(",") if r.strip()]
    unknown = [r for r in args.require if r not in KNOWN]
    if unknown:
        p.error(f"unknown --require {', '.join(unknown)}: choose from {', '.join(KNOWN)}")
    return args


class Client:
    def __init__(self, args):
        self.base = args.base_url.rstrip("/")
        self.timeout = args.timeout
        self.headers = {}
        if args.api_token:
            self.headers["Authorization"] = f"Bearer {args.api_token}"
            if args.token:
                self.headers["X-Serverless-Authorization"] = f"Bearer {args.token}"
        elif args.token:
            self.headers["Authorization"] = f"Bearer {args.token}"

    def request(self, path, body=None):
        """(status, parsed JSON body or None, raw text)."""
        data = None if body is None else json.dumps(body).encode()
        headers = dict(self.headers)
        if data is not None:
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.base + path, data=data, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        text = raw.decode("utf-8", "replace")
        try:
            return status, json.loads(text), text
        except ValueError:
            return status, None, text

    def execute(self, script, **extra):
        return self.request("/execute", dict(script=script, **extra))


SHAPE = '''
def main():
    print("shape")
    return {"n": 12345678901234567890, "f": 0.1, "list": [1, None, True, "é"]}
'''
IDENTITY = '''
import os
def main():
    return [os.getuid(), os.getgid(), os.geteuid()]
'''
NETWORK = '''
import socket
def main():
    with open("/proc/self/net/dev") as f:
        interfaces = sorted(line.split(":")[0].strip() for line in f.readlines()[2:])
    # A UDP connect only looks up a route (no packet leaves): with no interface but lo there is
    # none to a documentation address (RFC 5737).
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect(("192.0.2.1", 53))
        route = "found"
    except OSError as e:
        route = "none: " + (e.strerror or str(e))
    return {"interfaces": interfaces, "route": route}
'''
READ_ONLY_ROOT = '''
import os
def main():
    read_only = bool(os.statvfs("/").f_flag & os.ST_RDONLY)
    writes = []
    for path in ("/verify-deployment", "/usr/verify-deployment", "/etc/verify-deployment"):
        try:
            with open(path, "w") as f:
                f.write("x")
            writes.append(path)
        except OSError:
            pass
    return {"read_only": read_only, "written": writes}
'''
MEMORY = '''
def main():
    chunks = []
    for _ in range({chunks}):
        chunks.append(b"x" * (16 << 20))
    return len(chunks)
'''


class Verifier:
    def __init__(self, client, require):
        self.client = client
        self.require = require
        self.failures = []

    def check(self, name, ok, detail):
        print(f"verify-deployment: {'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)
        if not ok:
            self.failures.append(f"{name}: {detail}")
        return ok

    def run(self):
        try:
            status, health, text = self.client.request("/health")
        except (OSError, urllib.error.URLError) as e:
            self.check("health", False, f"cannot reach {self.client.base}/health: {e}")
            return
        if not self.check("health", status == 200 and isinstance(health, dict) and health.get("status") == "ok",
                          f"HTTP {status}" + ("" if status == 200 else f": {text[:300]}")):
            return
        isolation = health.get("isolation") or {}
        print("verify-deployment: isolation " + json.dumps(isolation, sort_keys=True), flush=True)
        limits = health.get("limits") or {}
        have = {
            "user_namespace": isolation.get("user_namespace") is True,
            "cgroup": isolation.get("cgroup") in ("v1", "v2"),
            "seccomp": isolation.get("seccomp") is True,
        }
        for need in self.require:
            self.check(f"requires {need}", have[need],
                       "in force" if have[need] else f"/health reports it missing ({isolation.get('summary')!r})")
        self.probe_shape()
        self.probe_identity()
        self.probe_network()
        self.probe_root()
        self.probe_memory(limits.get("memory_mb"))

    def probe(self, name, script, **extra):
        try:
            status, body, text = self.client.execute(script, **extra)
        except (OSError, urllib.error.URLError) as e:
            self.check(name, False, f"request failed: {e}")
            return None, None
        return status, body

    def probe_shape(self):
        status, body = self.probe("result shape", SHAPE)
        want = {"result": {"n": 12345678901234567890, "f": 0.1, "list": [1, None, True, "é"]}, "stdout": "shape\n"}
        if status is not None:
            self.check("result shape", status == 200 and body == want, f"HTTP {status} {json.dumps(body)[:300]}")

    def probe_result(self, name, script, judge):
        """Runs `script`; checks what main returned with `judge` (the result → passed?)."""
        status, body = self.probe(name, script)
        if status is None:
            return
        r = body.get("result") if status == 200 and isinstance(body, dict) else None
        self.check(name, r is not None and judge(r), f"in the jail: {r}" if r is not None else f"HTTP {status} {body}")

    def probe_identity(self):
        self.probe_result("uid", IDENTITY, lambda ids: isinstance(ids, list) and len(ids) == 3
                          and all(isinstance(i, int) and i != 0 for i in ids))

    def probe_network(self):
        self.probe_result("network", NETWORK, lambda r: isinstance(r, dict) and r.get("interfaces") == ["lo"]
                          and str(r.get("route")).startswith("none"))

    def probe_root(self):
        self.probe_result("read-only root", READ_ONLY_ROOT, lambda r: isinstance(r, dict)
                          and r.get("read_only") is True and r.get("written") == [])

    def probe_memory(self, memory_mb):
        if not isinstance(memory_mb, int) or memory_mb <= 0:
            self.check("memory limit", False, f"/health gives no limits.memory_mb ({memory_mb!r})")
            return
        # At most 128 MiB (a per-request memory_mb, enforced the same way as the service's own
        # limit), so that the probe stays quick on a slow or emulated machine.
        limit = min(memory_mb, 128)
        chunks = limit // 16 + 8  # 128 MiB over the limit, in 16 MiB pieces
        status, body = self.probe("memory limit", MEMORY.replace("{chunks}", str(chunks)), memory_mb=limit)
        if status is None:
            return
        kind = body.get("kind") if isinstance(body, dict) else None
        self.check("memory limit", status == 400 and kind == "memory_limit",
                   f"{chunks * 16} MiB against a {limit} MiB limit: HTTP {status} kind={kind}")


def main(argv):
    args = parse_args(argv)
    v = Verifier(Client(args), args.require)
    v.run()
    if v.failures:
        print(f"verify-deployment: FAILED ({len(v.failures)}): " + "; ".join(v.failures), flush=True)
        return 1
    print(f"verify-deployment: OK (required: {', '.join(args.require) or 'nothing'})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
