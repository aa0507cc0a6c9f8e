"""Unit tests of src/runner.py, the in-jail runner, outside any jail.

Run by tests/runner_py.rs (so `make test` runs them): python3 -m unittest tests/test_runner.py
"""
import importlib.util
import json
import os
import pathlib
import unittest

RUNNER = pathlib.Path(__file__).resolve().parent.parent / "src" / "runner.py"
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
    return parse(runner.run_script(fields, script, dumps))


class Frames(unittest.TestCase):
    def test_frame_is_tag_length_payload(self):
        self.assertEqual(runner.frame(b"ok", b"[1]"), b"ok 3\n[1]")

    def test_request_is_read_from_a_header_and_exact_bytes(self):
        r, w = os.pipe()
        script = "def main():\n    return 'é'\n".encode()
        header = json.dumps({"script_bytes": len(script)}).encode() + b"\n"
        saved = os.dup(0)
        try:
            os.write(w, header + script + b"trailing bytes are not read")
            os.close(w)
            os.dup2(r, 0)
            fields, text = runner.read_request()
        finally:
            os.dup2(saved, 0)
            os.close(saved)
            os.close(r)
        self.assertEqual(text, script.decode())
        self.assertEqual(fields["script_bytes"], len(script))


class RunScript(unittest.TestCase):
    def test_value(self):
        self.assertEqual(run("def main():\n    return {'a': [1, 2.5, None]}\n"), ("ok", b'{"a": [1, 2.5, null]}'))

    def test_async_main(self):
        self.assertEqual(run("async def main():\n    return 7\n"), ("ok", b"7"))

    def test_module_name_is_not_main(self):
        self.assertEqual(run("def main():\n    return __name__\n"), ("ok", b'"__script__"'))

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
            runner.run_script({}, "import sys\ndef main():\n    sys.exit(3)\n", dumps)

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

    def test_describe_survives_any_exception_str(self):
        class E(BaseException):
            def __str__(self):
                raise SystemExit(3)

        self.assertEqual(runner.describe(E())[1], "<exception message unavailable>")


if __name__ == "__main__":
    unittest.main()
