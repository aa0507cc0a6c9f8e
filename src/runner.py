"""python-executor's runner: the first process inside every jail (protocol v2).

The runner is one module in six files, joined in this order by `jail::protocol::RUNNER_SOURCE`
(and tests/test_runner.py): src/runner/files.py (data in and out), python_builtins.py (Python's
builtins for the runner's own steps), result_json.py (main()'s value as JSON), script.py
(running the script), ending.py (what CPython does when a program ends), then this one
(the protocol and `main`).

The service starts it as `python3 -I -B -c <the runner> warm|cold [module ...]` inside nsjail, where it is
PID 1 of the jail's PID namespace. It:

1. imports the named modules (the jail's "flavour", e.g. numpy pandas) so a pooled jail has
   them ready, then writes `ready` on the result channel (fd 3);
2. reads one request from stdin: a JSON header line `{"script_bytes": S, "request_bytes": R}`,
   the script's S UTF-8 bytes, then R bytes of a JSON object with the execution's data
   (`result_limit_bytes`, and `input`, `files`, `collect`, `max_files` when the request had them);
3. makes a fresh private working directory under /tmp and writes `files` into it;
4. forks. The child closes the result channel (so nothing the script does can write to it),
   runs the script as a fresh module named `__script__`, calls `main` (with `input` when it takes
   a positional parameter), awaits what it returns if that is awaitable, and sends a framed
   message back to the parent over a private pipe;
5. the parent waits for the child, kills and reaps every other process in the jail, reads the
   files `collect` asks for itself (never trusting the script's process for that), and sends one
   frame on the result channel:
   `ok <n>\\n{"value":<json text>,"files":{...},"usage":{...}}` (`files` only with `collect`),
   `error <n>\\n{"kind":...,"message":...,"usage":{...}}` or
   `exited <n>\\n{"exit_code"|"signal":N,"usage":{...}}` (with `"after_main":true` once main
   had returned its value: a thread or an atexit function ended the process).

stdout and stderr (fds 1 and 2) are the jail's own pipes to the service, untouched.

`collect` semantics: each pattern is matched per path component with fnmatch (`*` matches
names starting with a dot too), `**` is any number of directories (zero included; last, it
matches every file below). Only regular files come back: symlinks are never followed (a link
to /etc/passwd is not collected, nor is anything under a linked directory), FIFOs, sockets and
devices are skipped without being read. A hard link is a regular file: in a jail it can only
name a file of the jail's own /tmp (a link across mounts fails), so it is collected like any
other. Names that are not valid UTF-8 cannot be JSON keys faithfully and are skipped, as are
files the runner cannot read. A walk that looks at more than MAX_COLLECT_ENTRIES entries, or
would go into directories deeper than MAX_COLLECT_DEPTH that a pattern could match below, more
than `max_files` matches, or more bytes than the result cap is `result_too_large`.
"""

import os
import sys

RESULT_FD = 3
# Guards against a runaway or hostile child; the service applies the configured cap.
MAX_FRAME = 64 * 1024 * 1024
# An uncaught exception's message and traceback are each cut to this many UTF-8 bytes (the
# middle goes, with a mark), so a huge message stays a runtime_error; the one-line summary
# (`message`) is shorter still.
MAX_TRACEBACK = 64 * 1024
MAX_EXCEPTION_MESSAGE = 64 * 1024
MAX_SUMMARY = 4 * 1024
# Error frames the child sends are small; anything bigger on its pipe was forged.
MAX_ERROR_FRAME = 1024 * 1024
# One read from a pipe: a pipe holds 64 KiB, and os.read allocates what it is asked for, which
# under a small memory limit (RLIMIT_AS) fails before anything is read.
PIPE_READ = 64 * 1024
SCRIPT_NAME = "<script>"
RUNNER_GLOBALS = globals()
# What the child needs once the script has run, bound before the script can replace os.*.
_write, _exit, _getpid = os.write, os._exit, os.getpid
# Where the child keeps its end of the result pipe: clear of the low fds scripts poke at.
HIGH_FD = 255
# Each jail has a /tmp of its own; the script's working directory is made there per execution.
WORK_PARENT = "/tmp"
# matplotlib's configuration and cache directory: it must be writable (matplotlib checks), and
# it gets a copy of the font cache built at install time (see install_font_cache).
MPL_CONFIG_DIR = "/tmp/.matplotlib"
# Where scripts/prepare-sandbox.sh and the Dockerfile put that font cache, under sys.prefix
# (the virtualenv, or /usr/local in the image), which the jail mounts read-only.
FONT_CACHE_SOURCE = ("share", "python-executor", "matplotlib")


class Refused(Exception):
    """A request the runner cannot carry out: becomes an error frame of `kind`."""

    def __init__(self, kind, message, **fields):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.fields = fields


def write_all(fd, data):
    view = memoryview(data)
    while view:
        written = _write(fd, view)
        view = view[written:]


def frame(tag, payload):
    return b"%s %d\n" % (tag, len(payload)) + payload


def read_exactly(fd, size):
    chunks = []
    while size > 0:
        chunk = os.read(fd, min(size, PIPE_READ))
        if not chunk:
            raise EOFError("request ended early")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def read_request():
    """Reads the header line, the script and the request object from stdin; returns
    `(request, script)` where `request` is the request object (a dict)."""
    header = b""
    while not header.endswith(b"\n"):
        byte = os.read(0, 1)
        if not byte:
            raise EOFError("no request")
        header += byte
    import json

    fields = json.loads(header)
    script = read_exactly(0, int(fields["script_bytes"])).decode("utf-8")
    request_bytes = int(fields.get("request_bytes") or 0)
    request = json.loads(read_exactly(0, request_bytes)) if request_bytes else {}
    if not isinstance(request, dict):
        raise ValueError("the request is not a JSON object")
    # The script gets an empty stdin, never the service's request pipe.
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    return request, script


def hide_runner_arguments():
    """The script sees `sys.argv == ['<script>']` as if run as a file, not how its jail was
    started (warm or cold, the flavour's modules): argparse works and pooling does not show.
    (/proc/1/cmdline still shows them: the kernel's copy cannot be changed unprivileged.)"""
    executable = sys.orig_argv[0] if sys.orig_argv else "python3"
    sys.argv = [SCRIPT_NAME]
    sys.orig_argv = [executable, SCRIPT_NAME]


def prepare_matplotlib(config_dir=None, prefix=None):
    """Headless drawing, and the install-time font cache copied where matplotlib can write
    (it checks): without it the first `import matplotlib.pyplot` in a jail spends seconds
    building one. The copy is made when matplotlib is first imported, so a script that does
    not use it finds nothing of it in /tmp."""
    config_dir = config_dir or MPL_CONFIG_DIR
    os.environ["MPLBACKEND"] = "Agg"
    os.environ["MPLCONFIGDIR"] = config_dir
    sys.meta_path.insert(0, FontCacheOnImport(config_dir, prefix or sys.prefix))


class FontCacheOnImport:
    """An import hook that finds nothing: it only installs the font cache, once, just before
    matplotlib is imported for the first time."""

    def __init__(self, config_dir, prefix):
        self.config_dir = config_dir
        self.prefix = prefix

    def find_spec(self, name, path=None, target=None):
        if name == "matplotlib" or name.startswith("matplotlib."):
            try:
                sys.meta_path.remove(self)
            except ValueError:
                pass
            install_font_cache(self.config_dir, self.prefix)
        return None


def install_font_cache(config_dir, prefix):
    try:
        os.mkdir(config_dir, 0o700)
    except OSError:
        return
    source = os.path.join(prefix, *FONT_CACHE_SOURCE)
    try:
        names = os.listdir(source)
    except OSError:
        return
    for name in names:
        if name.startswith("fontlist-") and name.endswith(".json"):
            try:
                with open(os.path.join(source, name), "rb") as src:
                    data = src.read()
                with open(os.path.join(config_dir, name), "wb") as dst:
                    dst.write(data)
            except OSError:
                pass


# What wait_child returns instead of a frame when the pipe held something else, or when the
# script closed the child's end of it (the child then exits with CLOSED_EXIT).
CORRUPTED = b"corrupted"
# The answer when what came on the child's pipe cannot be the runner's: the script wrote there.
UNTRUSTED = {"kind": "result_not_json",
             "message": "the script wrote to the runner's private result channel: no result can be trusted"}
CLOSED = b"closed"
# An exit status scripts are unlikely to choose themselves (70, EX_SOFTWARE, is common).
CLOSED_EXIT = 213
MAX_HEAD = 64


def frame_length(buffer):
    """The whole length of the frame `buffer` starts with; None while its header is incomplete.
    Raises ValueError if the bytes are not a frame the child sends (`ok` or `error` only)."""
    newline = buffer.find(b"\n", 0, MAX_HEAD)
    if newline < 0:
        if len(buffer) >= MAX_HEAD:
            raise ValueError("no frame header")
        return None
    parts = bytes(buffer[:newline]).split(b" ")
    if len(parts) != 2 or parts[0] not in (b"ok", b"error") or not parts[1].isdigit():
        raise ValueError("bad frame header")
    return newline + 1 + int(parts[1])


def drain(fd, buffer, limit):
    """Adds what is already in the pipe to `buffer`, up to about `limit` bytes."""
    import select

    while len(buffer) <= limit:
        ready, _, _ = select.select([fd], [], [], 0)
        if not ready:
            return
        chunk = os.read(fd, PIPE_READ)
        if not chunk:
            return
        buffer += chunk


def wait_child(pid, result_r):
    """Reads the child's one frame while waiting for it to exit; returns (frame, status).

    The script runs in the child and can write to the child's end of this pipe itself. The
    frame is only taken if it is well-formed and is all the pipe holds when the child has
    exited: a forged frame followed by the real one, or anything that is not a frame, gives
    CORRUPTED instead of whichever came first."""
    import select

    pidfd = os.pidfd_open(pid)
    buffer = bytearray()
    expected = None
    open_pipe = True
    while True:
        waiting = [pidfd] + ([result_r] if open_pipe else [])
        ready, _, _ = select.select(waiting, [], [])
        if result_r in ready:
            chunk = os.read(result_r, PIPE_READ)
            if not chunk:
                open_pipe = False
            buffer += chunk
            if expected is None:
                try:
                    expected = frame_length(buffer)
                except ValueError:
                    return CORRUPTED, kill_and_reap(pid)
                if expected is not None and expected > MAX_FRAME:
                    return b"too_large", kill_and_reap(pid)
            if expected is not None and len(buffer) >= expected:
                _, status = os.waitpid(pid, 0)
                # Whatever the child wrote before exiting is in the pipe by now.
                if open_pipe:
                    drain(result_r, buffer, expected)
                if len(buffer) > expected:
                    return CORRUPTED, status
                return bytes(buffer), status
        if pidfd in ready:
            _, status = os.waitpid(pid, 0)
            if open_pipe:
                drain(result_r, buffer, MAX_FRAME if expected is None else expected)
            try:
                expected = frame_length(buffer)
            except ValueError:
                return CORRUPTED, status
            # The pipe's end and the child's exit may be seen at once (a loaded machine): the
            # exit status says which it was.
            if not buffer and os.WIFEXITED(status) and os.WEXITSTATUS(status) == CLOSED_EXIT:
                return CLOSED, status
            if expected is None or len(buffer) < expected:
                # Nothing, or a frame cut short: the child ended before reporting.
                return None, status
            if len(buffer) > expected:
                return CORRUPTED, status
            return bytes(buffer), status


def kill_and_reap(pid):
    import signal

    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
    _, status = os.waitpid(pid, 0)
    return status


def usage_of(started, monotonic):
    """The runner's own accounting of everything it reaped: wall time since the script's
    start, CPU time and the largest peak resident size of its reaped descendants."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "wall_ms": round((monotonic() - started) * 1000, 3),
        "cpu_ms": round((ru.ru_utime + ru.ru_stime) * 1000, 3),
        # ru_maxrss is in KiB on Linux.
        "peak_memory_bytes": ru.ru_maxrss * 1024,
    }


def with_usage(dumps, tag, fields, usage):
    fields["usage"] = usage
    return frame(tag, dumps(without_surrogates(fields), ensure_ascii=True).encode("ascii"))


def final_frame(reply, status, request, root_fd, dumps):
    """The frame for the host, without usage yet: `(tag, fields)` for an error or an exit,
    or `(b"ok", (value, files))` with the value's JSON bytes and the files' JSON text or None."""
    import json

    if reply == b"too_large":
        return b"error", {"kind": "result_too_large", "message": too_large_message(result_limit(request))}
    if reply == CORRUPTED:
        return b"error", dict(UNTRUSTED)
    if reply == CLOSED:
        return b"error", {"kind": "result_not_json",
                          "message": "the script closed the runner's private result channel: its result could not be sent"}
    if reply is None:
        if os.WIFSIGNALED(status):
            return b"exited", {"signal": os.WTERMSIG(status)}
        return b"exited", {"exit_code": os.WEXITSTATUS(status)}
    newline = reply.index(b"\n")
    tag, payload = reply[: newline].split(b" ")[0], reply[newline + 1:]
    if tag == b"error":
        # Written by the child's runner code, or forged by the script: taken only if it is a
        # small JSON object with a string kind.
        fields = None
        if len(payload) <= MAX_ERROR_FRAME:
            try:
                fields = json.loads(payload)
            except (ValueError, RecursionError):
                fields = None
        if not isinstance(fields, dict) or not isinstance(fields.get("kind"), str):
            return b"error", dict(UNTRUSTED)
        fields.pop("usage", None)
        return b"error", fields
    files = None
    if "collect" in request:
        try:
            max_files = request.get("max_files")
            if not isinstance(max_files, int) or isinstance(max_files, bool) or max_files < 0:
                max_files = DEFAULT_MAX_FILES
            collector = Collector(request["collect"], max_files, result_limit(request))
            collector.find(root_fd)
            files = collector.read(root_fd, len(payload))
        except Refused as refused:
            fields = dict(refused.fields, kind=refused.kind, message=refused.message)
            if refused.kind == "result_too_large":
                # The host words the value's own overflow itself; this one it passes on.
                fields["limit_bytes"] = result_limit(request)
                fields["cause"] = "collect"
            return b"error", fields
    return b"ok", (payload, files)


def ok_payload(value, files, usage, dumps):
    """`{"value":...,"files":...,"usage":...}` with `value` first and byte for byte."""
    parts = [b'{"value":', value]
    if files is not None:
        parts += [b',"files":', files.encode("ascii")]
    parts += [b',"usage":', dumps(usage).encode("ascii"), b"}"]
    return b"".join(parts)


def warm_up(everything=False):
    """Loads before `ready` what the runner uses once the script arrives, so that no script
    waits for it. A zygote loads `everything` once for all its children. A pooled jail pays
    for its loads with every execution, so it loads only what every execution uses: an error's
    traceback (~4 ms of CPU) and collected files' media types (~7 ms) are loaded by the
    executions that need them. A cold jail loads only what it ends up using. Never asyncio
    (~30 ms: ssl and all, and ~5 MB a zygote's every fork would copy) nor inspect (~10 ms):
    only an async `main` or a decorated one needs them, and imports them then."""
    import binascii, mmap, resource, select, signal, stat, types, warnings  # noqa

    if everything:
        import fnmatch, linecache, traceback  # noqa
        import mimetypes

        media_type_of("x", mimetypes)


def main():
    mode, modules = sys.argv[1], sys.argv[2:]
    hide_runner_arguments()
    prepare_matplotlib()
    for name in modules:
        __import__(name)
    if mode == "warm":
        warm_up()
    import json
    import time

    dumps = json.dumps
    monotonic = time.monotonic
    write_all(RESULT_FD, b"ready\n")
    try:
        request, script = read_request()
    except ValueError as exc:
        # The service checks the request, so only a gap in its checks lands here (an integer
        # Python will not read): an answer about the request, never the runner's traceback.
        fields = {"kind": "invalid_request", "message": "the request cannot be read: %s" % exc}
        write_all(RESULT_FD, with_usage(dumps, b"error", fields, usage_of(monotonic(), monotonic)))
        os.close(RESULT_FD)
        return
    # From the request's arrival: a pooled jail may have waited long for it.
    started = monotonic()

    root_fd = None
    try:
        workdir, root_fd = make_workdir()
        os.chdir(workdir)
        if "files" in request:
            write_files(root_fd, request["files"])
        if "collect" in request:
            compile_patterns(request["collect"])
    except (Refused, OSError) as exc:
        if isinstance(exc, Refused):
            fields = dict(exc.fields, kind=exc.kind, message=exc.message)
        else:
            fields = {"kind": "invalid_request", "message": "the working directory cannot be made: %s" % exc.strerror}
        write_all(RESULT_FD, with_usage(dumps, b"error", fields, usage_of(started, monotonic)))
        os.close(RESULT_FD)
        return

    import mmap
    import signal

    result_r, result_w = os.pipe()
    # A byte the child sets once main() has returned its value: a process ended after that (by
    # a thread, an atexit function) is told apart from one that ended before.
    returned = mmap.mmap(-1, 1)
    # As PID 1 the runner only gets signals it handles, and Python handles SIGINT: ignored
    # here, a SIGINT the script sends to PID 1 cannot end the runner before it reports.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.close(RESULT_FD)
        os.close(result_r)
        os.close(root_fd)
        child(request, script, result_w, dumps, returned)
        os._exit(0)
    os.close(result_w)
    reply, status = wait_child(pid, result_r)
    # Nothing else may run while the files are read, nor write to stdout or stderr after.
    end_everything_else()
    tag, fields = final_frame(reply, status, request, root_fd, dumps)
    if tag == b"exited" and returned[0]:
        fields["after_main"] = True
    usage = usage_of(started, monotonic)
    if tag == b"ok":
        value, files = fields
        reply = frame(b"ok", ok_payload(value, files, usage, dumps))
    else:
        try:
            reply = with_usage(dumps, tag, fields, usage)
        except RecursionError:
            # A forged error frame nested just shallowly enough to be read.
            reply = with_usage(dumps, b"error", dict(UNTRUSTED), usage)
    write_all(RESULT_FD, reply)
    os.close(RESULT_FD)


def end_everything_else():
    """Kills and reaps every other process in the jail (we are its PID 1), so that once the
    report is written nothing can write to stdout or stderr any more: the service takes what
    is in the pipes as complete without waiting for the jail to be torn down."""
    import signal

    if os.getpid() != 1:
        # Outside its own PID namespace kill(-1) would reach far beyond the jail.
        return
    while True:
        try:
            os.kill(-1, signal.SIGKILL)
        except OSError:
            pass
        try:
            while True:
                os.waitpid(-1, 0)
        except ChildProcessError:
            return
        except InterruptedError:
            continue


if __name__ == "__main__":
    main()
