"""Unit tests of the in-jail runner (src/runner.py and its parts), outside any jail.

Run by tests/runner_py.rs (so `make test` runs them): python3 -m unittest tests/test_runner.py
"""
import base64
import builtins
import gc
import importlib.util
import json
import os
import pathlib
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import warnings

SCRATCH = []
SRC = pathlib.Path(__file__).resolve().parent.parent / "src"
# The runner as the service runs it: one module made of its parts and runner.py, in the order
# of jail::protocol::RUNNER_SOURCE.
RUNNER_FILES = (
    SRC / "runner" / "files.py",
    SRC / "runner" / "python_builtins.py",
    SRC / "runner" / "result_json.py",
    SRC / "runner" / "script.py",
    SRC / "runner" / "ending.py",
    SRC / "runner.py",
)
SCRATCH.append(tempfile.mkdtemp(prefix="runner-source-"))
RUNNER = pathlib.Path(SCRATCH[-1]) / "runner.py"
RUNNER.write_text("".join(path.read_text() for path in RUNNER_FILES))
spec = importlib.util.spec_from_file_location("runner", RUNNER)
runner = importlib.util.module_from_spec(spec)
spec.loader.exec_module(runner)
dumps = json.dumps


def parse(frame):
    head, _, payload = frame.partition(b"\n")
    tag, length = head.split(b" ")
    assert int(length) == len(payload), (head, len(payload))
    return tag.decode(), payload


def run(script, **fields):
    fields.setdefault("result_limit_bytes", 1 << 20)
    # The script becomes `__main__` (as_main); this process's own is put back after it.
    main = sys.modules["__main__"]
    try:
        return parse(runner.run_script(fields, script, dumps, dict(builtins.__dict__), {}))
    finally:
        sys.modules["__main__"] = main


class Frames(unittest.TestCase):
    def test_frame_is_tag_length_payload(self):
        self.assertEqual(runner.frame(b"ok", b"[1]"), b"ok 3\n[1]")

    def read_request_from(self, data):
        r, w = os.pipe()
        saved = os.dup(0)
        try:
            os.write(w, data)
            os.close(w)
            os.dup2(r, 0)
            return runner.read_request()
        finally:
            os.dup2(saved, 0)
            os.close(saved)
            os.close(r)

    def test_request_is_a_header_the_script_and_the_request_object(self):
        script = "def main():\n    return 'é'\n".encode()
        request = json.dumps({"result_limit_bytes": 10, "input": [1, "é"]}).encode()
        header = json.dumps({"script_bytes": len(script), "request_bytes": len(request)}).encode() + b"\n"
        fields, text = self.read_request_from(header + script + request + b"trailing bytes are not read")
        self.assertEqual(text, script.decode())
        self.assertEqual(fields, {"result_limit_bytes": 10, "input": [1, "é"]})

    def test_no_request_bytes_is_an_empty_request(self):
        script = b"def main():\n    return 1\n"
        header = json.dumps({"script_bytes": len(script), "request_bytes": 0}).encode() + b"\n"
        self.assertEqual(self.read_request_from(header + script), ({}, script.decode()))


class RunScript(unittest.TestCase):
    def test_value(self):
        self.assertEqual(run("def main():\n    return {'a': [1, 2.5, None]}\n"), ("ok", b'{"a": [1, 2.5, null]}'))

    def test_async_main(self):
        self.assertEqual(run("async def main():\n    return 7\n"), ("ok", b"7"))

    def test_module_name_is_not_main(self):
        self.assertEqual(run("def main():\n    return __name__\n"), ("ok", b'"__script__"'))

    def test_the_main_module_is_the_script(self):
        script = "import __main__\nX = 5\ndef main():\n    from __main__ import X as same\n    return [same, __main__.__name__]\n"
        self.assertEqual(run(script), ("ok", b'[5, "__script__"]'))

    def test_syntax_error_has_line_and_column(self):
        tag, payload = run("def main():\n    return (\n")
        body = json.loads(payload)
        self.assertEqual((tag, body["kind"]), ("error", "syntax_error"))
        self.assertGreaterEqual(body["line"], 1)
        self.assertGreaterEqual(body["column"], 1)

    def test_missing_or_uncallable_main(self):
        for script in ("x = 1\n", "main = 3\n"):
            tag, payload = run(script)
            self.assertEqual(json.loads(payload)["kind"], "missing_main")

    def test_runtime_error_traceback_has_no_runner_frames(self):
        tag, payload = run("def main():\n    raise KeyError('k')\n")
        body = json.loads(payload)
        self.assertEqual(body["kind"], "runtime_error")
        self.assertEqual(body["exception"], {"type": "KeyError", "message": "'k'"})
        self.assertIn('File "<script>", line 2, in main', body["traceback"])
        self.assertNotIn("runner.py", body["traceback"])
        self.assertNotIn("run_script", body["traceback"])

    def test_tracebacks_quote_the_lines_a_file_would_have(self):
        # A form feed (PEP 8's page break), U+2028 and \x1c split lines for str.splitlines,
        # not for Python reading a file: the quoted line is the one the number names.
        script = "import inspect\n\x0c\nx = '\u2028\x1c'\n\ndef helper():\n    return 42\n\ndef main():\n    raise ValueError(inspect.getsource(helper))\n"
        body = json.loads(run(script)[1])
        self.assertEqual(body["exception"]["message"], "def helper():\n    return 42\n")
        self.assertIn('line 9, in main\n    raise ValueError(inspect.getsource(helper))', body["traceback"])

    def test_hostile_exception_str(self):
        script = "class E(Exception):\n    def __str__(self):\n        raise RuntimeError('no')\ndef main():\n    raise E()\n"
        body = json.loads(run(script)[1])
        self.assertEqual(body["kind"], "runtime_error")
        self.assertEqual(body["exception"]["type"], "E")

    def test_not_json(self):
        for expr in ("{1}", "float('inf')", "object()"):
            body = json.loads(run("def main():\n    return %s\n" % expr)[1])
            self.assertEqual(body["kind"], "result_not_json", expr)

    def test_too_large(self):
        body = json.loads(run("def main():\n    return 'x' * 100\n", result_limit_bytes=50)[1])
        self.assertEqual(body["kind"], "result_too_large")

    def test_memory_error(self):
        body = json.loads(run("def main():\n    raise MemoryError()\n")[1])
        self.assertEqual(body["kind"], "memory_limit")

    def test_system_exit_propagates_to_end_the_process(self):
        with self.assertRaises(SystemExit):
            runner.run_script({}, "import sys\ndef main():\n    sys.exit(3)\n", dumps, dict(builtins.__dict__), {})

    def test_rebound_builtins_are_the_scripts_and_the_runners_steps_run_on_pythons(self):
        # main sees what the script rebound; the runner's steps after it (wording an error,
        # its traceback, serialising the value) do not, and neither does this process after.
        for script, expected in [
            ("import builtins\ndef main():\n    builtins.len = lambda x: 3\n    return [len('abcdef'), 'a longer string']\n",
             ("ok", b'[3, "a longer string"]')),
            ("import builtins\ndef main():\n    builtins.len = None\n    return 1\n", ("ok", b"1")),
            ("import builtins\nbuiltins.isinstance = lambda *a: False\ndel builtins.callable\n"
             "def main(data):\n    return [isinstance(1, int), data]\n", ("ok", b"[false, null]")),
        ]:
            self.assertEqual(run(script), expected, script)
        script = "import builtins\ndef main():\n    builtins.isinstance = lambda *a: False\n    raise ValueError('x')\n"
        body = json.loads(run(script)[1])
        self.assertEqual((body["kind"], body["exception"]), ("runtime_error", {"type": "ValueError", "message": "x"}))
        self.assertTrue(body["traceback"].endswith("    raise ValueError('x')\nValueError: x\n"), body["traceback"])
        self.assertIs(builtins.isinstance(1, int), True)
        self.assertTrue(callable(len) and len("ab") == 2)

    def test_the_scripts_builtins_are_put_back_for_what_ends_the_program(self):
        originals, script_own = dict(builtins.__dict__), {}
        frame = runner.run_script({}, "import builtins\ndef main():\n    builtins.len = lambda x: -1\n    return 2\n",
                                  dumps, originals, script_own)
        self.assertEqual(parse(frame), ("ok", b"2"))
        self.assertEqual(len("abc"), 3)
        try:
            runner.bring_back(script_own)
            self.assertEqual(builtins.len("abc"), -1)
        finally:
            self.assertEqual(runner.set_aside(originals), script_own)
        self.assertEqual(len("abc"), 3)

    def test_monkeypatched_json_does_not_change_the_runner_serialiser(self):
        tag, payload = run("import json\njson.dumps = lambda *a, **k: 'forged'\ndef main():\n    return [1]\n")
        self.assertEqual((tag, payload), ("ok", b"[1]"))


class ResultPipe(unittest.TestCase):
    """The runner's side of the child's private result pipe, which the script can write to."""

    def child_writes(self, *chunks, code=0):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            try:
                for chunk in chunks:
                    os.write(w, chunk)
            finally:
                os._exit(code)
        os.close(w)
        try:
            return runner.wait_child(pid, r)
        finally:
            os.close(r)

    def test_one_frame_is_taken(self):
        frame, status = self.child_writes(b"ok 2\n42")
        self.assertEqual((frame, os.waitstatus_to_exitcode(status)), (b"ok 2\n42", 0))

    def test_a_forged_frame_before_the_real_one_is_corruption(self):
        self.assertEqual(self.child_writes(b"ok 2\n42", b"ok 1\n1")[0], runner.CORRUPTED)

    def test_anything_but_a_frame_is_corruption(self):
        for junk in (b"garbage!!\n", b"exited 2\n{}", b"ok two\n12", b"x" * (1 << 20)):
            self.assertEqual(self.child_writes(junk)[0], runner.CORRUPTED, junk[:20])

    def test_nothing_or_a_cut_frame_means_the_child_ended_first(self):
        for chunks in ((), (b"ok 10\n12",), (b"ok 1",)):
            frame, status = self.child_writes(*chunks, code=3)
            self.assertEqual((frame, os.waitstatus_to_exitcode(status)), (None, 3), chunks)

    def test_a_pipe_closed_by_the_script_is_told_apart(self):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            os.close(w)
            import time
            time.sleep(0.2)
            os._exit(runner.CLOSED_EXIT)
        os.close(w)
        try:
            self.assertEqual(runner.wait_child(pid, r)[0], runner.CLOSED)
        finally:
            os.close(r)

    def test_a_forged_error_frame_too_deep_to_read_is_untrusted(self):
        payload = b'{"kind":"runtime_error","message":"m","x":' + b"[" * 200000 + b"]" * 200000 + b"}"
        tag, fields = runner.final_frame(b"error %d\n" % len(payload) + payload, 0, {}, None, dumps)
        self.assertEqual((tag, fields), (b"error", runner.UNTRUSTED))

    def test_describe_survives_any_exception_str(self):
        class E(BaseException):
            def __str__(self):
                raise SystemExit(3)

        self.assertEqual(runner.describe(E())[1], "<exception str() failed>")


SANDBOX_PYTHON = sys.executable


def scratch(prefix):
    """A temporary directory removed when the test run ends (the collect tests make 100 000
    files: nothing of them may stay behind on the host). On a tmpfs where there is one, as
    the jail's /tmp is: 100 000 files on a busy disk take seconds to tens of seconds."""
    shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    path = tempfile.mkdtemp(prefix=prefix, dir=shm)
    SCRATCH.append(path)
    return path


def tearDownModule():
    for path in SCRATCH:
        shutil.rmtree(path, ignore_errors=True)


def run_main(script, request=None, mode="cold", modules=(), parent=None):
    """Runs the runner's main() as the jail does (a process of its own, the request on stdin,
    the result channel on fd 3), with its working directory and matplotlib directory under
    `parent` instead of /tmp. Not PID 1, so it kills no other process. Returns
    (frame tag, payload, stderr)."""
    parent = parent or scratch("runner-test-")
    r, w = os.pipe()
    code = (
        "import importlib.util, os, sys\n"
        "os.dup2(%d, 3)\n"
        "os.close(%d)\n"
        "spec = importlib.util.spec_from_file_location('runner', %r)\n"
        "runner = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(runner)\n"
        "runner.WORK_PARENT = %r\n"
        "runner.MPL_CONFIG_DIR = %r\n"
        "sys.argv = ['-c', %r] + %r\n"
        # nsjail.cfg's rlimit_nofile.
        "import resource\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))\n"
        "runner.main()\n"
    ) % (w, w, str(RUNNER), parent, os.path.join(parent, ".matplotlib"), mode, list(modules))
    if isinstance(request, bytes):
        body = request
    else:
        body = json.dumps(request if request is not None else {"result_limit_bytes": 1 << 20}).encode()
    data = json.dumps({"script_bytes": len(script.encode()), "request_bytes": len(body)}).encode()
    data += b"\n" + script.encode() + body
    proc = subprocess.Popen(
        [SANDBOX_PYTHON, "-I", "-B", "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        pass_fds=(w,),
    )
    os.close(w)
    try:
        out, err = proc.communicate(data, timeout=60)
        channel = b""
        while True:
            chunk = os.read(r, 1 << 20)
            if not chunk:
                break
            channel += chunk
    finally:
        os.close(r)
    assert channel.startswith(b"ready\n"), (channel[:200], err[-2000:])
    tag, payload = parse(channel[len(b"ready\n"):])
    return tag, payload, err.decode("utf-8", "replace")


def ok_parts(payload):
    """Splits an ok payload, checking that `value` comes first as its exact text."""
    body = json.loads(payload)
    assert payload.startswith(b'{"value":'), payload[:100]
    assert list(body)[0] == "value" and list(body)[-1] == "usage", list(body)
    return body


class Protocol(unittest.TestCase):
    """main() end to end, as in a jail, outside one."""

    def test_ok_frame_is_value_first_byte_for_byte_then_usage(self):
        tag, payload, _ = run_main("def main():\n    return {'big': 10**30, 'f': 0.1, 's': 'é'}\n")
        self.assertEqual(tag, "ok")
        value = json.dumps({"big": 10**30, "f": 0.1, "s": "é"}, allow_nan=False)
        self.assertTrue(payload.startswith(b'{"value":' + value.encode() + b',"usage":'), payload)
        body = ok_parts(payload)
        self.assertNotIn("files", body)
        usage = body["usage"]
        self.assertEqual(set(usage), {"wall_ms", "cpu_ms", "peak_memory_bytes"})
        self.assertIsInstance(usage["wall_ms"], float)
        self.assertIsInstance(usage["cpu_ms"], float)
        self.assertIsInstance(usage["peak_memory_bytes"], int)
        self.assertGreater(usage["peak_memory_bytes"], 1 << 20)

    def test_usage_counts_the_child_and_what_it_started(self):
        script = (
            "import subprocess, sys, time\n"
            "def main():\n"
            "    subprocess.run([sys.executable, '-c', 'x = bytearray(80 << 20); t = 0\\nfor i in range(3_000_000): t += i'])\n"
            "    time.sleep(0.2)\n"
        )
        tag, payload, _ = run_main(script)
        usage = ok_parts(payload)["usage"]
        self.assertGreaterEqual(usage["peak_memory_bytes"], 80 << 20)
        self.assertGreater(usage["cpu_ms"], 20)
        self.assertGreaterEqual(usage["wall_ms"], 200)

    def test_every_error_and_exit_frame_has_usage(self):
        for script, tag, key in (
            ("def main():\n    raise ValueError('x')\n", "error", "kind"),
            ("import os\ndef main():\n    os._exit(3)\n", "exited", "exit_code"),
            ("import os, signal\ndef main():\n    os.kill(os.getpid(), signal.SIGKILL)\n", "exited", "signal"),
            ("def main():\n    return {1}\n", "error", "kind"),
        ):
            got, payload, _ = run_main(script)
            body = json.loads(payload)
            self.assertEqual(got, tag, script)
            self.assertIn(key, body)
            self.assertEqual(set(body["usage"]), {"wall_ms", "cpu_ms", "peak_memory_bytes"}, script)

    def test_exited_frame(self):
        tag, payload, _ = run_main("import os\ndef main():\n    os._exit(3)\n")
        body = json.loads(payload)
        self.assertEqual((tag, body["exit_code"]), ("exited", 3))
        self.assertNotIn("after_main", body)

    def test_an_exit_after_main_returned_says_so(self):
        tag, payload, _ = run_main("import atexit, os\natexit.register(os._exit, 4)\ndef main():\n    return 1\n")
        body = json.loads(payload)
        self.assertEqual((tag, body["exit_code"], body["after_main"]), ("exited", 4, True))

    def test_argv_is_the_script_only_and_argparse_works(self):
        script = (
            "import argparse, sys\n"
            "def main():\n"
            "    parser = argparse.ArgumentParser()\n"
            "    parser.add_argument('--n', type=int, default=3)\n"
            "    parser.add_argument('-v', action='store_true')\n"
            "    args = parser.parse_args()\n"
            "    return [sys.argv, sys.orig_argv[1:], args.n, args.v]\n"
        )
        tag, payload, err = run_main(script, mode="warm", modules=["json"])
        self.assertEqual(tag, "ok", payload)
        self.assertEqual(ok_parts(payload)["value"], [["<script>"], ["<script>"], 3, False])
        self.assertNotIn(b"warm", payload)

    def test_working_directory_is_fresh_private_and_has_the_files(self):
        parent = scratch("runner-test-")
        script = (
            "import os, stat\n"
            "def main():\n"
            "    cwd = os.getcwd()\n"
            "    return [os.path.dirname(cwd), oct(stat.S_IMODE(os.stat(cwd).st_mode)), sorted(os.listdir('.')),\n"
            "            open('data.csv').read(), open('sub/dir/b.bin', 'rb').read().hex()]\n"
        )
        request = {
            "result_limit_bytes": 1 << 20,
            "files": [
                {"path": "data.csv", "text": "a,b\n1,é\n"},
                {"path": "sub/dir/b.bin", "base64": "AAH/"},
            ],
        }
        tag, payload, err = run_main(script, request, parent=parent)
        self.assertEqual(tag, "ok", (payload, err))
        self.assertEqual(ok_parts(payload)["value"], [parent, "0o700", ["data.csv", "sub"], "a,b\n1,é\n", "0001ff"])
        tag, payload, err = run_main("import os\ndef main():\n    return os.listdir('.')\n", parent=parent)
        self.assertEqual(ok_parts(payload)["value"], [], "each execution gets a fresh directory")

    def test_bad_files_are_refused_before_the_script_runs(self):
        for files in (
            [{"path": "../x", "text": "a"}],
            [{"path": "/etc/x", "text": "a"}],
            [{"path": "a", "base64": "not base64!"}],
            [{"path": "a", "text": "1"}, {"path": "a", "text": "2"}],
        ):
            tag, payload, _ = run_main("print('ran')\ndef main():\n    return 1\n",
                                       {"result_limit_bytes": 100, "files": files})
            body = json.loads(payload)
            self.assertEqual((tag, body["kind"]), ("error", "invalid_request"), files)
            self.assertIn(repr(files[-1]["path"]), body["message"])
            self.assertIn("usage", body)

    def test_files_deeper_than_the_fd_limit_are_written(self):
        path = "/".join(["d"] * 300) + "/f.txt"
        script = "def main():\n    return open(%r).read()\n" % path
        tag, payload, err = run_main(script, {"result_limit_bytes": 100, "files": [{"path": path, "text": "deep"}]})
        self.assertEqual((tag, ok_parts(payload)["value"]), ("ok", "deep"), (payload, err))

    def test_an_unreadable_request_is_invalid_request_not_a_crash(self):
        # Python reads no integer over 4300 digits; the service refuses those itself.
        body = b'{"result_limit_bytes": 100, "input": ' + b"1" * 4301 + b"}"
        tag, payload, err = run_main("def main(x):\n    print('ran')\n", body)
        fields = json.loads(payload)
        self.assertEqual((tag, fields["kind"]), ("error", "invalid_request"), (payload, err))
        self.assertIn("the request cannot be read", fields["message"])
        self.assertIn("usage", fields)
        self.assertNotIn("Traceback", err)

    def test_lone_surrogates_in_an_error_become_replacement_characters(self):
        script = "import os\ndef main():\n    raise ValueError('cannot parse ' + os.fsdecode(b'caf\\xe9.csv'))\n"
        tag, payload, err = run_main(script)
        # What the host's strict parser reads: no lone surrogate escapes.
        self.assertNotIn(b"\\ud", payload.lower())
        fields = json.loads(payload)
        self.assertEqual((tag, fields["kind"]), ("error", "runtime_error"), (payload, err))
        self.assertEqual(fields["exception"]["message"], "cannot parse caf\ufffd.csv")
        self.assertIn("cannot parse caf\ufffd.csv", fields["traceback"])

    def test_collect_in_the_ok_frame(self):
        script = (
            "def main():\n"
            "    open('chart.png', 'wb').write(b'\\x89PNG')\n"
            "    open('notes.txt', 'w').write('n')\n"
            "    return 'done'\n"
        )
        tag, payload, _ = run_main(script, {"result_limit_bytes": 4096, "collect": ["*.png"], "max_files": 5})
        body = ok_parts(payload)
        self.assertEqual(list(body), ["value", "files", "usage"])
        self.assertEqual(body["files"], {"chart.png": {"base64": "iVBORw==", "size": 4, "media_type": "image/png"}})
        self.assertTrue(payload.startswith(b'{"value":"done","files":{"chart.png":'), payload)

    def test_collect_matching_nothing_is_an_empty_object(self):
        tag, payload, _ = run_main("def main():\n    return 1\n", {"result_limit_bytes": 100, "collect": ["*.png"]})
        self.assertEqual(ok_parts(payload)["files"], {})

    def test_collect_patterns_that_leave_the_directory_are_refused_before_the_script_runs(self):
        for pattern in ("/etc/*", "../*", "a/../../b", "", "a//b", "./x", "a\0b"):
            tag, payload, out = run_main("def main():\n    print('ran')\n",
                                         {"result_limit_bytes": 100, "collect": [pattern]})
            body = json.loads(payload)
            self.assertEqual((tag, body["kind"]), ("error", "invalid_request"), pattern)

    def test_value_and_files_share_the_result_limit(self):
        script = "def main():\n    open('a.bin', 'wb').write(b'x' * 600)\n    return 'v' * 300\n"
        tag, payload, _ = run_main(script, {"result_limit_bytes": 1000, "collect": ["*.bin"]})
        body = json.loads(payload)
        self.assertEqual((tag, body["kind"]), ("error", "result_too_large"))
        tag, payload, _ = run_main(script, {"result_limit_bytes": 1400, "collect": ["*.bin"]})
        self.assertEqual(ok_parts(payload)["files"]["a.bin"]["size"], 600)

    def test_what_python_does_at_exit_happens_before_the_report(self):
        # A file written through a handle never closed, an archive never closed, a thread that
        # is not a daemon and an atexit function: after `python script.py` the files are whole
        # and the lines printed; so they are in the answer. A daemon thread is not waited for.
        script = (
            "import atexit, threading, time, zipfile\n"
            "out = open('report.txt', 'w')\n"
            "archive = zipfile.ZipFile('a.zip', 'w')\n"
            "wrapped = zipfile.ZipFile(open('b.zip', 'wb'), 'w')\n"
            "wrapped.writestr('y.txt', 'more')\n"
            "atexit.register(print, 'atexit ran')\n"
            "def late():\n"
            "    time.sleep(0.2)\n"
            "    print('thread done')\n"
            # A finalizer that needs the module's globals, also from a reference cycle: Python
            # runs it with its globals there.
            "import os\n"
            "class Cleanup:\n"
            "    def __init__(self, name):\n"
            "        self.name, self.me = name, self\n"
            "    def __del__(self):\n"
            "        os.close(os.open(self.name, os.O_CREAT | os.O_WRONLY))\n"
            "plain, cyclic = Cleanup('plain.txt'), Cleanup('cyclic.txt')\n"
            "import io\n"
            "class Text(io.TextIOWrapper):\n"
            "    pass\n"
            "own = Text(open('own.txt', 'wb'), encoding='utf-8', write_through=False)\n"
            "own.write('abc')\n"
            "del plain.me\n"
            "def main():\n"
            "    out.write('hello report')\n"
            "    archive.writestr('x.txt', 'data')\n"
            "    threading.Thread(target=late).start()\n"
            "    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
            "    return 'done'\n"
        )
        started = time.monotonic()
        tag, payload, stderr = run_main(script, {"result_limit_bytes": 1 << 20, "collect": ["*.txt", "*.zip"]})
        self.assertLess(time.monotonic() - started, 30)
        self.assertEqual(stderr, "")
        body = ok_parts(payload)
        self.assertEqual(body["value"], "done")
        files = {name: base64.b64decode(f["base64"]) for name, f in body["files"].items()}
        self.assertEqual(sorted(files), ["a.zip", "b.zip", "cyclic.txt", "own.txt", "plain.txt", "report.txt"])
        self.assertEqual(files["own.txt"], b"abc")
        self.assertEqual(files["report.txt"], b"hello report")
        # A daemon thread that keeps using the module's globals runs on untouched to the end.
        spinning = (
            "import threading, time\n"
            "COUNT = 0\n"
            "def spin():\n"
            "    global COUNT\n"
            "    while True:\n"
            "        COUNT += 1\n"
            "        time.sleep(0.001)\n"
            "def main():\n"
            "    threading.Thread(target=spin, daemon=True).start()\n"
            "    time.sleep(0.05)\n"
            "    return 'spun'\n"
        )
        tag, payload, stderr = run_main(spinning)
        self.assertEqual((ok_parts(payload)["value"], stderr), ("spun", ""))
        archive = pathlib.Path(scratch("runner-zip-")) / "a.zip"
        archive.write_bytes(files["a.zip"])
        import zipfile
        with zipfile.ZipFile(archive) as z:
            self.assertEqual(z.read("x.txt"), b"data")
        archive.write_bytes(files["b.zip"])
        with zipfile.ZipFile(archive) as z:
            self.assertEqual(z.read("y.txt"), b"more")

    def test_no_collect_after_an_error(self):
        tag, payload, _ = run_main("def main():\n    open('a.png', 'w').write('x')\n    raise ValueError('no')\n",
                                   {"result_limit_bytes": 1000, "collect": ["*"]})
        body = json.loads(payload)
        self.assertEqual(body["kind"], "runtime_error")
        self.assertNotIn("files", body)


class Input(unittest.TestCase):
    def value(self, script, **request):
        request.setdefault("result_limit_bytes", 1 << 20)
        tag, payload = run(script, **request)
        return tag, json.loads(payload)

    def test_main_with_a_parameter_gets_input(self):
        self.assertEqual(self.value("def main(data):\n    return data\n", input={"a": [1, None]}), ("ok", {"a": [1, None]}))

    def test_main_with_a_parameter_gets_none_without_input(self):
        self.assertEqual(self.value("def main(data):\n    return data\n"), ("ok", None))

    def test_null_input_is_input(self):
        tag, body = self.value("def main():\n    return 1\n", input=None)
        self.assertEqual((tag, body["kind"]), ("error", "invalid_request"))

    def test_a_parameter_with_a_default_gets_none_without_input(self):
        # API.md: a main that declares a positional parameter is called with input, None when
        # the request has none.
        self.assertEqual(self.value("def main(n=10):\n    return n\n"), ("ok", None))
        self.assertEqual(self.value("def main(n=10, m=2):\n    return [n, m]\n"), ("ok", [None, 2]))
        self.assertEqual(self.value("def main(*args):\n    return list(args)\n"), ("ok", []))
        self.assertEqual(self.value("def main(*args, **kw):\n    return [list(args), kw]\n"), ("ok", [[], {}]))
        self.assertEqual(self.value("def main(n=10):\n    return n\n", input=4), ("ok", 4))
        self.assertEqual(self.value("def main(*args):\n    return list(args)\n", input=4), ("ok", [4]))

    def test_input_for_main_without_a_parameter_is_invalid_request(self):
        tag, body = self.value("def main():\n    return 1\n", input=3)
        self.assertEqual((tag, body["kind"]), ("error", "invalid_request"))
        self.assertIn("main() takes no argument", body["message"])

    def test_signature_behind_a_decorator_follows_wrapped(self):
        deco = (
            "import functools\n"
            "def deco(f):\n"
            "    @functools.wraps(f)\n"
            "    def inner(*a, **k):\n"
            "        return f(*a, **k)\n"
            "    return inner\n"
        )
        tag, body = self.value(deco + "@deco\ndef main():\n    return 1\n", input=3)
        self.assertEqual(body["kind"], "invalid_request")
        self.assertEqual(self.value(deco + "@deco\ndef main(x):\n    return x\n", input=3), ("ok", 3))
        self.assertEqual(self.value(deco + "@deco\ndef main():\n    return 1\n"), ("ok", 1))

    def test_the_quick_signature_of_a_plain_def_is_what_inspect_says(self):
        import functools
        import inspect

        slow = runner.inspected_signature

        namespace = {}
        exec(
            "def a(): pass\n"
            "def b(x): pass\n"
            "def c(x=1): pass\n"
            "def d(x, y=2): pass\n"
            "def e(x=1, y=2): pass\n"
            "def f(*args): pass\n"
            "def g(x, *args): pass\n"
            "def h(*, k): pass\n"
            "def i(*, k=1): pass\n"
            "def j(**kw): pass\n"
            "def k(x, /): pass\n"
            "def l(x=1, /, y=2): pass\n"
            "def m(x, /, *args, k, **kw): pass\n"
            "async def n(): pass\n"
            "async def o(x): pass\n"
            "def p(*args, x=1): pass\n"
            "q = lambda x=3: x\n"
            "r = lambda: 1\n",
            namespace,
        )
        plain = [v for v in namespace.values() if callable(v)]
        self.assertEqual(len(plain), 18)
        for entry in plain:
            self.assertEqual(runner.plain_function_signature(entry), slow(entry), entry.__name__)
            self.assertEqual(runner.call_signature(entry), slow(entry), entry.__name__)
        # Anything else is left to inspect: decorated, partial, callable objects, builtins, a
        # function that says its own signature.
        wrapped = functools.wraps(namespace["b"])(lambda *a, **k: None)
        told = namespace["a"]
        told.__signature__ = inspect.signature(namespace["b"])
        class Callable:
            def __call__(self, x):
                pass
        for entry in (wrapped, functools.partial(namespace["d"], 1), Callable(), len, told):
            self.assertIsNone(runner.plain_function_signature(entry), entry)
            self.assertEqual(runner.call_signature(entry), slow(entry), entry)

    def test_only_what_inspect_calls_awaitable_is_awaited(self):
        import collections.abc
        import inspect

        class Registered:
            pass

        collections.abc.Awaitable.register(Registered)

        class Await:
            def __await__(self):
                yield

        class NoneAwait:
            __await__ = None

        async def coroutine():
            pass

        def generator():
            yield

        made = coroutine()
        for value in (1, "x", None, [1], {"a": 1}, Await(), NoneAwait(), Registered(), made, generator(), object()):
            if inspect.isawaitable(value):
                self.assertTrue(runner.may_be_awaitable(value), value)
        made.close()
        self.assertFalse(runner.may_be_awaitable(1))
        self.assertFalse(runner.may_be_awaitable({"a": 1}))

    def test_input_is_data_never_code(self):
        self.assertEqual(self.value("def main(s):\n    return s\n", input="__import__('os')"), ("ok", "__import__('os')"))


class Awaitables(unittest.TestCase):
    def test_sync_decorator_around_async_main_is_awaited_without_warning(self):
        script = (
            "def deco(f):\n"
            "    def inner():\n"
            "        return f()\n"
            "    return inner\n"
            "@deco\n"
            "async def main():\n"
            "    import asyncio\n"
            "    await asyncio.sleep(0)\n"
            "    return 5\n"
        )
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            self.assertEqual(run(script), ("ok", b"5"))
            gc.collect()
        self.assertEqual([w for w in seen if issubclass(w.category, RuntimeWarning)], [])

    def test_any_awaitable_is_awaited(self):
        script = (
            "class Later:\n"
            "    def __await__(self):\n"
            "        yield from ()\n"
            "        return 'later'\n"
            "def main():\n"
            "    return Later()\n"
        )
        self.assertEqual(run(script), ("ok", b'"later"'))

    def test_async_main_with_input(self):
        self.assertEqual(run("async def main(x):\n    return x * 2\n", input=21), ("ok", b"42"))

    def test_async_traceback_shows_the_script_only(self):
        tag, payload = run("async def main():\n    raise KeyError('k')\n")
        trace = json.loads(payload)["traceback"]
        self.assertTrue(trace.startswith("Traceback (most recent call last):\n  File \"<script>\", line 2"), trace)
        self.assertNotIn("asyncio", trace)
        self.assertNotIn("await_it", trace)


class Conversion(unittest.TestCase):
    def test_plain_values_are_json_dumps_byte_for_byte(self):
        for expr in ("10**40", "0.1 + 0.2", "'é\\u2028\\U0001f600'", "[1, {'a': (2, 3)}, None, True]", "-0.0", "1e300"):
            value = eval(expr)
            tag, payload = run("def main():\n    return %s\n" % expr)
            self.assertEqual((tag, payload), ("ok", json.dumps(value, allow_nan=False).encode("utf-8", "surrogatepass")), expr)

    def test_numpy_scalars_and_arrays(self):
        cases = {
            "np.int64(3)": b"3",
            "np.float32(0.5)": b"0.5",
            "np.float64(0.1)": b"0.1",
            "np.bool_(True)": b"true",
            "np.array([[1, 2], [3, 4]])": b"[[1, 2], [3, 4]]",
            "{'n': np.uint8(255), 'a': np.arange(3)}": b'{"n": 255, "a": [0, 1, 2]}',
            "np.array([True, False])": b"[true, false]",
            # As keys, as json.dumps has Python's; one with no such form stays refused.
            "{np.int64(3): 2, np.bool_(False): [{np.float32(0.5): None}]}": b'{"3": 2, "false": [{"0.5": null}]}',
        }
        for expr, text in cases.items():
            self.assertEqual(run("import numpy as np\ndef main():\n    return %s\n" % expr), ("ok", text), expr)

    def test_lone_surrogates_in_the_result_become_replacement_characters(self):
        script = "def main():\n    return ['\\ud800x', ('\\udce9',), {'k\\udfff': '\U0001f600'}, '\\\\ud800']\n"
        self.assertEqual(run(script), ("ok", b'["\\ufffdx", ["\\ufffd"], {"k\\ufffd": "\\ud83d\\ude00"}, "\\\\ud800"]'))

    def test_lone_surrogates_in_numpy_arrays_become_replacement_characters(self):
        # A file name os.fsdecode made of undecodable bytes, in an array as os.listdir gives it.
        script = "import numpy as np\ndef main():\n    return {'a': np.array(['caf\\udce9.csv', 'ok'])}\n"
        self.assertEqual(run(script), ("ok", b'{"a": ["caf\\ufffd.csv", "ok"]}'))

    def test_surrogate_pairs_stay_as_json_dumps_writes_them(self):
        # Two code points that JSON reads as one character; only the lone ones around them go.
        script = "def main():\n    return ['a' + chr(0xD83D) + chr(0xDE00), chr(0xDE00) + chr(0xD83D), chr(0xD83D) * 2 + chr(0xDE00)]\n"
        self.assertEqual(run(script), ("ok", b'["a\\ud83d\\ude00", "\\ufffd\\ufffd", "\\ufffd\\ud83d\\ude00"]'))

    def test_a_numpy_key_without_a_json_form_is_still_refused(self):
        body = json.loads(run("import numpy as np\ndef main():\n    return {np.datetime64('2024-01-01'): 1}\n")[1])
        self.assertEqual(body["kind"], "result_not_json")
        self.assertIn("keys must be", body["message"])

    def test_pandas_reductions(self):
        script = (
            "import pandas as pd\n"
            "def main():\n"
            "    df = pd.DataFrame({'x': [1, 2, 3], 'y': [0.5, 1.5, 2.0]})\n"
            "    return [df['x'].sum(), df['y'].mean(), bool(df['x'].is_monotonic_increasing), df['x'].max()]\n"
        )
        self.assertEqual(run(script), ("ok", b"[6, 1.3333333333333333, true, 3]"))

    def test_nan_and_infinity_stay_not_json(self):
        for expr in ("np.float64('nan')", "np.array([1.0, np.inf])", "{'a': [np.float32('nan')]}", "float('nan')"):
            tag, payload = run("import numpy as np\ndef main():\n    return %s\n" % expr)
            self.assertEqual(json.loads(payload)["kind"], "result_not_json", expr)
            self.assertIn("float NaN or infinity", json.loads(payload)["message"], expr)

    def test_dataframe_and_series_get_a_hint(self):
        for expr, name in (("pd.DataFrame({'x': [1]})", "DataFrame"), ("pd.Series([1])", "Series"),
                           ("{'df': pd.DataFrame()}", "DataFrame")):
            tag, payload = run("import pandas as pd\ndef main():\n    return %s\n" % expr)
            body = json.loads(payload)
            self.assertEqual(body["kind"], "result_not_json")
            self.assertIn("pandas %s" % name, body["message"])
            self.assertIn(".to_dict()", body["message"])

    def test_numpy_scalars_without_a_json_form_are_named(self):
        for expr, name in (("np.longdouble(1.5)", "longdouble"), ("np.datetime64('2024-01-01')", "datetime64"),
                           ("np.bytes_(b'x')", "bytes_"), ("np.complex128(1j)", "complex128")):
            body = json.loads(run("import numpy as np\ndef main():\n    return %s\n" % expr)[1])
            self.assertEqual(body["kind"], "result_not_json")
            self.assertIn("numpy %s" % name, body["message"])
        # Those that have one are plain numbers, booleans and strings.
        tag, payload = run("import numpy as np\ndef main():\n    return [np.int8(3), np.float32(0.5), np.bool_(True), np.str_('s')]\n")
        self.assertEqual((tag, payload), ("ok", b'[3, 0.5, true, "s"]'))

    def test_numpy_is_not_imported_for_a_script_that_did_not(self):
        code = (
            "import importlib.util, json, sys\n"
            "spec = importlib.util.spec_from_file_location('runner', %r)\n"
            "runner = importlib.util.module_from_spec(spec)\n"
            "spec.loader.exec_module(runner)\n"
            "frame = runner.run_script({}, 'def main():\\n    return {1: object()}\\n', json.dumps, {}, {})\n"
            "assert b'result_not_json' in frame, frame\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'pandas')))\n"
        ) % str(RUNNER)
        out = subprocess.run([SANDBOX_PYTHON, "-I", "-c", code], capture_output=True, text=True, check=True).stdout
        self.assertEqual(out.strip(), "[]")


class ExceptionCaps(unittest.TestCase):
    def test_a_huge_message_stays_a_capped_runtime_error(self):
        tag, payload = run("def main():\n    raise ValueError('m' * 5_000_000)\n", result_limit_bytes=1 << 20)
        body = json.loads(payload)
        self.assertEqual((tag, body["kind"]), ("error", "runtime_error"))
        self.assertLess(len(payload), 200 * 1024)
        self.assertEqual(body["exception"]["type"], "ValueError")
        for text, cap in ((body["exception"]["message"], runner.MAX_EXCEPTION_MESSAGE),
                          (body["traceback"], runner.MAX_TRACEBACK), (body["message"], runner.MAX_SUMMARY)):
            self.assertRegex(text, r"\.\.\.\[truncated \d+ bytes\]\.\.\.")
            self.assertLessEqual(len(text.encode()), cap + 64)
        self.assertTrue(body["message"].startswith("ValueError: mmm"))
        self.assertIn('File "<script>", line 2, in main', body["traceback"])

    def test_the_cut_is_counted_and_keeps_head_and_tail(self):
        text = "a" * 100 + "é" * 1000 + "z" * 100
        capped = runner.cap_text(text, 200)
        self.assertTrue(capped.startswith("a" * 100) and capped.endswith("z" * 100))
        head, rest = capped.split("...[truncated ")
        cut, tail = rest.split(" bytes]...")
        self.assertEqual(len(head.encode()) + int(cut) + len(tail.encode()), len(text.encode()))
        self.assertEqual(runner.cap_text("short", 200), "short")

    def test_short_messages_are_unchanged(self):
        body = json.loads(run("def main():\n    raise ValueError('boom')\n")[1])
        self.assertEqual((body["message"], body["exception"]["message"]), ("ValueError: boom", "boom"))


class WriteFiles(unittest.TestCase):
    def setUp(self):
        self.parent = scratch("runner-files-")
        self.addCleanup(shutil.rmtree, self.parent, True)
        self.path, self.fd = runner.make_workdir(self.parent)

    def tearDown(self):
        os.close(self.fd)

    def test_workdir_is_private(self):
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o700)
        self.assertEqual(os.path.dirname(self.path), self.parent)

    def test_text_base64_and_subdirectories(self):
        runner.write_files(self.fd, [
            {"path": "a.txt", "text": "é\n"},
            {"path": "d/e/f.bin", "base64": "AP8="},
            {"path": "d/g", "text": ""},
            # As the service accepts it: unpadded, wrapped.
            {"path": "h.bin", "base64": "AP8"},
            {"path": "i.txt", "base64": "YWJj\nZGVm ZA"},
            {"path": "tab\tname", "text": "t"},
        ])
        with open(os.path.join(self.path, "h.bin"), "rb") as f:
            self.assertEqual(f.read(), b"\x00\xff")
        with open(os.path.join(self.path, "i.txt"), "rb") as f:
            self.assertEqual(f.read(), b"abcdefd")
        with open(os.path.join(self.path, "tab\tname"), "rb") as f:
            self.assertEqual(f.read(), b"t")
        with open(os.path.join(self.path, "a.txt"), "rb") as f:
            self.assertEqual(f.read(), "é\n".encode())
        with open(os.path.join(self.path, "d/e/f.bin"), "rb") as f:
            self.assertEqual(f.read(), b"\x00\xff")
        self.assertEqual(os.path.getsize(os.path.join(self.path, "d/g")), 0)

    def test_hostile_paths_are_refused_and_nothing_is_written_outside(self):
        before = sorted(os.listdir(self.parent))
        for path in ("../escape", "/tmp/escape", "a//b", "./a", "a/./b", "a/..", "", "a\0b", "a/", "/", 3, None,
                     "x" * 300):
            with self.assertRaises(runner.Refused, msg=repr(path)) as caught:
                runner.write_files(self.fd, [{"path": path, "text": "x"}])
            self.assertEqual(caught.exception.kind, "invalid_request")
        self.assertEqual(sorted(os.listdir(self.parent)), before)
        self.assertEqual(os.listdir(self.path), [])

    def test_bad_content_names_the_file(self):
        for entry in ({"path": "b.bin", "base64": "A"}, {"path": "b.bin", "base64": "AA==junk"},
                      {"path": "b.bin"}, {"path": "b.bin", "text": "\ud800"}):
            with self.assertRaises(runner.Refused) as caught:
                runner.write_files(self.fd, [entry])
            self.assertIn("'b.bin'", caught.exception.message)

    def test_never_through_a_symlink_nor_over_a_file(self):
        outside = scratch("runner-outside-")
        os.symlink(outside, os.path.join(self.path, "link"))
        os.symlink(os.path.join(outside, "target"), os.path.join(self.path, "dangling"))
        for path in ("link/x", "dangling"):
            with self.assertRaises(runner.Refused):
                runner.write_files(self.fd, [{"path": path, "text": "x"}])
        self.assertEqual(os.listdir(outside), [])
        runner.write_files(self.fd, [{"path": "f", "text": "1"}])
        with self.assertRaises(runner.Refused):
            runner.write_files(self.fd, [{"path": "f", "text": "2"}])
        with self.assertRaises(runner.Refused):
            runner.write_files(self.fd, [{"path": "f/g", "text": "2"}])


class Collect(unittest.TestCase):
    def setUp(self):
        self.parent = scratch("runner-collect-")
        self.addCleanup(shutil.rmtree, self.parent, True)
        self.path, self.fd = runner.make_workdir(self.parent)

    def tearDown(self):
        os.close(self.fd)

    def put(self, name, data=b"x"):
        full = os.path.join(self.path, name)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(data)

    def collect(self, patterns, max_files=100, budget=1 << 20, **bounds):
        collector = runner.Collector(patterns, max_files, budget, **bounds)
        collector.find(self.fd)
        return json.loads(collector.read(self.fd, 0))

    def test_patterns_per_component_and_double_star(self):
        for name in ("a.png", "b.csv", "out/c.csv", "out/deep/d.csv", "x/y/z/e.png", ".hidden.png"):
            self.put(name)
        self.assertEqual(sorted(self.collect(["*.png"])), [".hidden.png", "a.png"])
        self.assertEqual(sorted(self.collect(["out/*.csv"])), ["out/c.csv"])
        self.assertEqual(sorted(self.collect(["**/*.csv"])), ["b.csv", "out/c.csv", "out/deep/d.csv"])
        self.assertEqual(sorted(self.collect(["out/**"])), ["out/c.csv", "out/deep/d.csv"])
        self.assertEqual(sorted(self.collect(["x/**/e.png", "a.*"])), ["a.png", "x/y/z/e.png"])
        self.assertEqual(self.collect(["nothing*"]), {})

    def test_entries_have_base64_size_and_media_type(self):
        self.put("chart.png", b"\x89PNG\r\n")
        self.put("t.csv", b"a,b\n")
        self.put("blob", b"\x00")
        self.put("data:text", b"<b>")
        files = self.collect(["*"])
        self.assertEqual(files["chart.png"], {"base64": "iVBORw0K", "size": 6, "media_type": "image/png"})
        self.assertEqual(files["t.csv"]["media_type"], "text/csv")
        self.assertEqual(files["blob"]["media_type"], "application/octet-stream")
        self.assertEqual(files["data:text"]["media_type"], "application/octet-stream")

    def test_compressed_files_have_the_compression_as_media_type(self):
        for name in ("data.csv.gz", "a.json.bz2", "a.txt.xz", "a.tar.gz", "a.tgz"):
            self.put(name, b"x")
        files = self.collect(["*"])
        self.assertEqual(
            {name: entry["media_type"] for name, entry in files.items()},
            {
                "data.csv.gz": "application/gzip",
                "a.json.bz2": "application/x-bzip2",
                "a.txt.xz": "application/x-xz",
                "a.tar.gz": "application/gzip",
                "a.tgz": "application/gzip",
            },
        )

    def test_double_star_never_leaves_the_directory(self):
        with open(os.path.join(self.parent, "secret"), "w") as f:
            f.write("secret")
        self.put("inside.txt")
        os.symlink(self.parent, os.path.join(self.path, "up"))
        os.symlink("/", os.path.join(self.path, "root"))
        self.assertEqual(sorted(self.collect(["**/*", "**"])), ["inside.txt"])
        self.assertEqual(self.collect(["up/*", "root/etc/*"]), {})

    def test_symlinks_are_never_followed_hard_links_are_files(self):
        os.symlink("/etc/passwd", os.path.join(self.path, "passwd.txt"))
        os.symlink("/etc", os.path.join(self.path, "etc"))
        self.put("own.txt", b"mine")
        # A hard link is a regular file: in a jail it can only name a file of the jail's own
        # /tmp (links across mounts fail with EXDEV), so it is collected like any other.
        os.link(os.path.join(self.path, "own.txt"), os.path.join(self.path, "hard.txt"))
        files = self.collect(["*.txt", "etc/*", "**/passwd"])
        self.assertEqual(sorted(files), ["hard.txt", "own.txt"])
        self.assertEqual(files["hard.txt"]["base64"], "bWluZQ==")

    def test_fifos_and_devices_never_hang(self):
        os.mkfifo(os.path.join(self.path, "pipe.csv"))
        os.symlink("/dev/zero", os.path.join(self.path, "zero.csv"))
        made_device = False
        try:
            os.mknod(os.path.join(self.path, "dev.csv"), 0o600 | stat.S_IFCHR, os.makedev(1, 5))
            made_device = True
        except PermissionError:
            pass
        self.put("real.csv")
        done = []
        thread = threading.Thread(target=lambda: done.append(self.collect(["*.csv"])), daemon=True)
        thread.start()
        thread.join(20)
        self.assertEqual(done and sorted(done[0]), ["real.csv"])
        # Even when the listing said "regular file" and it is not (a swap between listing and
        # opening), it is opened without blocking and not read.
        self.assertIsNone(runner.read_regular(self.fd, ("pipe.csv",), 100))
        if made_device:
            self.assertIsNone(runner.read_regular(self.fd, ("dev.csv",), 100))
        self.assertIsNone(runner.read_regular(self.fd, ("zero.csv",), 100))
        self.assertIsNone(runner.read_regular(self.fd, ("nope",), 100))

    def test_a_growing_file_is_read_up_to_the_budget(self):
        name = os.path.join(self.path, "grow.log")
        stop = threading.Event()

        def grow():
            with open(name, "ab", buffering=0) as f:
                while not stop.is_set():
                    f.write(b"y" * 65536)

        self.put("grow.log", b"")
        writer = threading.Thread(target=grow, daemon=True)
        writer.start()
        try:
            time.sleep(0.05)
            collector = runner.Collector(["*.log"], 10, 4 << 20)
            collector.find(self.fd)
            try:
                files = json.loads(collector.read(self.fd, 0))
            except runner.Refused as refused:
                self.assertEqual(refused.kind, "result_too_large")
            else:
                entry = files["grow.log"]
                self.assertEqual(len(base64.b64decode(entry["base64"])), entry["size"])
                self.assertLessEqual(entry["size"], 3 << 20)
        finally:
            stop.set()
            writer.join()

    def test_too_many_files_names_the_count(self):
        for i in range(12):
            self.put("f%02d.txt" % i)
        with self.assertRaises(runner.Refused) as caught:
            self.collect(["*.txt"], max_files=10)
        self.assertEqual(caught.exception.kind, "result_too_large")
        self.assertIn("12 files", caught.exception.message)
        self.assertEqual(len(self.collect(["*.txt"], max_files=12)), 12)

    def test_a_hundred_thousand_tiny_files_are_bounded(self):
        for d in range(100):
            sub = os.path.join(self.path, "d%03d" % d)
            os.mkdir(sub)
            for i in range(1000):
                os.close(os.open(os.path.join(sub, str(i)), os.O_CREAT | os.O_WRONLY, 0o600))
        started = time.monotonic()
        with self.assertRaises(runner.Refused) as caught:
            self.collect(["**/*"], max_files=100)
        self.assertLess(time.monotonic() - started, 30)
        self.assertEqual(caught.exception.kind, "result_too_large")
        self.assertIn("more than 100 files", caught.exception.message)
        # A pattern that matches nothing still stops after a bounded walk.
        with self.assertRaises(runner.Refused) as caught:
            self.collect(["**/*.png"], max_files=100)
        self.assertIn("directory entries", caught.exception.message)

    def test_files_share_the_budget_with_the_value(self):
        self.put("a.bin", b"z" * 3000)
        collector = runner.Collector(["*.bin"], 10, 5000)
        collector.find(self.fd)
        self.assertEqual(json.loads(collector.read(self.fd, 500))["a.bin"]["size"], 3000)
        with self.assertRaises(runner.Refused) as caught:
            collector.read(self.fd, 1500)
        self.assertEqual(caught.exception.kind, "result_too_large")

    def test_names_that_are_not_utf8_are_skipped(self):
        os.close(os.open(os.path.join(self.path.encode(), b"bad\xff.png"), os.O_CREAT | os.O_WRONLY, 0o600))
        os.mkdir(os.path.join(self.path.encode(), b"dir\xfe"))
        os.close(os.open(os.path.join(self.path.encode(), b"dir\xfe/in.png"), os.O_CREAT | os.O_WRONLY, 0o600))
        self.put("good.png")
        files = self.collect(["*.png", "**/*.png"])
        self.assertEqual(list(files), ["good.png"])
        json.loads(json.dumps(files))

    def test_depth_is_bounded_and_going_past_it_is_refused(self):
        self.put("/".join(["d"] * 40) + "/deep.png")
        self.put("/".join(["d"] * 3) + "/shallow.png")
        with self.assertRaises(runner.Refused) as caught:
            self.collect(["**/*.png"], max_depth=10)
        self.assertEqual(caught.exception.kind, "result_too_large")
        self.assertIn("deeper than 10 levels", caught.exception.message)
        # Patterns that never go that deep are not refused for it.
        self.assertEqual(list(self.collect(["d/d/d/*.png"], max_depth=10)), ["d/d/d/shallow.png"])
        self.assertEqual(list(self.collect(["*.png"], max_depth=0)), [])


class Matplotlib(unittest.TestCase):
    def test_the_font_cache_is_copied_when_matplotlib_is_first_imported(self):
        prefix = scratch("runner-prefix-")
        source = os.path.join(prefix, *runner.FONT_CACHE_SOURCE)
        os.makedirs(source)
        with open(os.path.join(source, "fontlist-v1.json"), "w") as f:
            f.write("{}")
        config = os.path.join(scratch("runner-mpl-"), "mpl")
        saved = {k: os.environ.get(k) for k in ("MPLBACKEND", "MPLCONFIGDIR")}
        hooks = list(sys.meta_path)
        try:
            runner.prepare_matplotlib(config, prefix)
            self.assertEqual((os.environ["MPLBACKEND"], os.environ["MPLCONFIGDIR"]), ("Agg", config))
            hook = sys.meta_path[0]
            self.assertIsNone(hook.find_spec("json"))
            self.assertFalse(os.path.exists(config), "nothing until matplotlib is imported")
            self.assertIsNone(hook.find_spec("matplotlib"))
            self.assertNotIn(hook, sys.meta_path)
        finally:
            sys.meta_path[:] = hooks
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        self.assertEqual(os.listdir(config), ["fontlist-v1.json"])
        self.assertTrue(os.access(config, os.W_OK))

    def test_a_script_without_matplotlib_leaves_tmp_with_its_directory_only(self):
        parent = scratch("runner-test-")
        tag, payload, _ = run_main("import os\ndef main():\n    return [os.listdir(%r), os.path.basename(os.getcwd())]\n" % parent,
                                   parent=parent)
        listing, cwd = ok_parts(payload)["value"]
        self.assertEqual(listing, [cwd])

    def test_pyplot_imports_without_building_the_font_cache(self):
        """The sandbox's own install-time cache (scripts/prepare-sandbox.sh) is found and used."""
        script = (
            "import logging, os\n"
            "seen = []\n"
            "class Keep(logging.Handler):\n"
            "    def emit(self, record):\n"
            "        seen.append(record.getMessage())\n"
            "logging.getLogger('matplotlib').addHandler(Keep())\n"
            "logging.getLogger('matplotlib').setLevel(logging.DEBUG)\n"
            "import matplotlib.pyplot as plt\n"
            "def main():\n"
            "    fig, ax = plt.subplots()\n"
            "    ax.plot([1, 2, 3])\n"
            "    ax.set_title('fonts')\n"
            "    fig.savefig('chart.png')\n"
            "    cache = [m for m in seen if 'fontManager' in m or 'font cache' in m]\n"
            "    return [cache, plt.get_backend().lower(), sorted(os.listdir(os.environ['MPLCONFIGDIR']))]\n"
        )
        tag, payload, err = run_main(script, {"result_limit_bytes": 1 << 22, "collect": ["*.png"]})
        self.assertEqual(tag, "ok", (payload[:300], err[-2000:]))
        body = ok_parts(payload)
        cache, backend, config = body["value"]
        self.assertEqual(len(cache), 1, cache)
        self.assertTrue(cache[0].startswith("Using fontManager instance from"), cache)
        self.assertEqual(backend, "agg")
        self.assertTrue(any(n.startswith("fontlist-") for n in config), config)
        self.assertNotIn("font cache", err)
        self.assertTrue(base64.b64decode(body["files"]["chart.png"]["base64"]).startswith(b"\x89PNG"))


if __name__ == "__main__":
    unittest.main()
