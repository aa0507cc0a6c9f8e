"""python-executor's runner: the first process inside every jail.

The service starts it as `python3 -I -B -c <this file> warm|cold [module ...]` inside nsjail, where it is
PID 1 of the jail's PID namespace. It:

1. imports the named modules (the jail's "flavour", e.g. numpy pandas) so a pooled jail has
   them ready, then writes `ready` on the result channel (fd 3);
2. reads one request from stdin: a JSON header line, then the script's UTF-8 bytes;
3. forks. The child closes the result channel (so nothing the script does can write to it),
   runs the script as a fresh module named `__script__`, calls `main()` and sends a framed
   message back to the parent over a private pipe;
4. the parent waits for the child and forwards one frame on the result channel:
   `ok <n>\\n<json>`, `error <n>\\n<json object>` or `exited <n>\\n<json object>`. When it exits,
   the kernel kills everything left in the jail: orphans cannot outlive the execution.

stdout and stderr (fds 1 and 2) are the jail's own pipes to the service, untouched.
"""

import os
import sys

RESULT_FD = 3
# Guards against a runaway or hostile child; the service applies the configured cap.
MAX_FRAME = 64 * 1024 * 1024
MAX_TRACEBACK = 64 * 1024
SCRIPT_NAME = "<script>"
RUNNER_GLOBALS = globals()
# What the child needs once the script has run, bound before the script can replace os.*.
_write, _exit, _getpid = os.write, os._exit, os.getpid
# Where the child keeps its end of the result pipe: clear of the low fds scripts poke at.
HIGH_FD = 255


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
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            raise EOFError("request ended early")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def read_request():
    header = b""
    while not header.endswith(b"\n"):
        byte = os.read(0, 1)
        if not byte:
            raise EOFError("no request")
        header += byte
    import json

    fields = json.loads(header)
    script = read_exactly(0, int(fields["script_bytes"])).decode("utf-8")
    # The script gets an empty stdin, never the service's request pipe.
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    return fields, script


def describe(exc):
    """`(type name, message)` of an exception, even if its __str__ is hostile."""
    try:
        name = type(exc).__qualname__
        module = type(exc).__module__
        if module not in ("builtins", "__script__", None):
            name = "%s.%s" % (module, name)
        name = str(name)
    except BaseException:  # a __str__ may raise SystemExit or KeyboardInterrupt too
        name = "Exception"
    try:
        message = str(exc)
    except BaseException:
        message = "<exception message unavailable>"
    return name, message


def user_traceback(exc):
    """The traceback as Python prints it, without the runner's own frames."""
    import traceback

    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_globals is RUNNER_GLOBALS:
        tb = tb.tb_next
    try:
        lines = traceback.format_exception(type(exc), exc, tb)
        text = "".join(lines)
    except BaseException:
        text = "Traceback unavailable\n"
    if len(text) > MAX_TRACEBACK:
        text = text[: MAX_TRACEBACK // 2] + "\n...\n" + text[-MAX_TRACEBACK // 2 :]
    return text


def run_script(fields, script, dumps):
    """Runs in the child. Returns the frame to send to the parent."""
    import linecache
    import types

    # Tracebacks show the script's lines, as they would for a file.
    linecache.cache[SCRIPT_NAME] = (len(script), None, script.splitlines(True), SCRIPT_NAME)
    try:
        code = compile(script, SCRIPT_NAME, "exec", dont_inherit=True)
    except SyntaxError as exc:
        return error_frame(
            dumps,
            "syntax_error",
            "SyntaxError: %s" % exc.msg,
            line=exc.lineno or 1,
            column=exc.offset or 1,
        )
    except (ValueError, MemoryError, RecursionError) as exc:
        name, message = describe(exc)
        message = message or name
        if isinstance(exc, (MemoryError, RecursionError)):
            # CPython's parser and compiler give up on very deep nesting this way.
            message = "the script is nested too deeply to compile (%s)" % message
        return error_frame(dumps, "syntax_error", "SyntaxError: %s" % message, line=1, column=1)

    module = types.ModuleType("__script__")
    module.__file__ = SCRIPT_NAME
    sys.modules["__script__"] = module
    try:
        exec(code, module.__dict__)
        entry = module.__dict__.get("main")
        if not callable(entry):
            return error_frame(dumps, "missing_main", "main is not defined or not callable")
        import inspect

        if inspect.iscoroutinefunction(entry):
            import asyncio

            value = asyncio.run(entry())
        else:
            value = entry()
    except MemoryError as exc:
        return error_frame(dumps, "memory_limit", "MemoryError: the script ran out of memory",
                           traceback=user_traceback(exc))
    except SystemExit:
        raise
    except BaseException as exc:  # KeyboardInterrupt and friends are the script's errors too
        name, message = describe(exc)
        return error_frame(
            dumps,
            "runtime_error",
            "%s: %s" % (name, message) if message else name,
            exception={"type": name, "message": message},
            traceback=user_traceback(exc),
        )

    try:
        text = dumps(value, allow_nan=False)
        if not isinstance(text, str):
            raise TypeError("json.dumps did not return a string")
    except MemoryError:
        return error_frame(dumps, "memory_limit", "MemoryError: out of memory serialising the result")
    except RecursionError:
        return error_frame(dumps, "result_not_json", "main() returned a value nested too deeply for JSON")
    except (TypeError, ValueError) as exc:
        return error_frame(dumps, "result_not_json",
                           "main() returned a value that is not JSON-serialisable: %s" % describe(exc)[1])
    except BaseException as exc:
        name, message = describe(exc)
        return error_frame(dumps, "result_not_json",
                           "main() returned a value that could not be serialised: %s: %s" % (name, message))
    payload = text.encode("utf-8", "surrogatepass")
    limit = int(fields.get("result_limit_bytes") or MAX_FRAME)
    if len(payload) > limit:
        return error_frame(dumps, "result_too_large",
                           "the result is %d bytes of JSON, over the %d-byte limit" % (len(payload), limit),
                           limit_bytes=limit)
    return frame(b"ok", payload)


def error_frame(dumps, kind, message, **fields):
    fields["kind"] = kind
    fields["message"] = message
    return frame(b"error", dumps(fields, ensure_ascii=True).encode("ascii"))


def child(fields, script, result_w, dumps):
    os.setsid()
    try:
        os.dup2(result_w, HIGH_FD, inheritable=False)
        os.close(result_w)
        result_w = HIGH_FD
    except OSError:
        pass
    me = _getpid()
    try:
        reply = run_script(fields, script, dumps)
    except SystemExit:
        flush_std()
        raise
    if _getpid() != me:
        # A process the script forked returned through the runner: it has nothing to report.
        _exit(0)
    flush_std()
    try:
        write_all(result_w, reply)
    except OSError:
        _exit(CLOSED_EXIT)
    _exit(0)


def flush_std():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass


# What wait_child returns instead of a frame when the pipe held something else, or when the
# script closed the child's end of it (the child then exits with CLOSED_EXIT).
CORRUPTED = b"corrupted"
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
        chunk = os.read(fd, 1 << 20)
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
            chunk = os.read(result_r, 1 << 20)
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


def main():
    mode, modules = sys.argv[1], sys.argv[2:]
    for name in modules:
        __import__(name)
    if mode == "warm":
        # A pooled jail imports everything the runner may use before `ready`, so it pays for
        # none of it once the script arrives. A cold jail imports only what it ends up using.
        import asyncio, inspect, linecache, select, signal, traceback, types  # noqa: F401
    import json

    dumps = json.dumps
    write_all(RESULT_FD, b"ready\n")
    fields, script = read_request()

    import signal

    result_r, result_w = os.pipe()
    # As PID 1 the runner only gets signals it handles, and Python handles SIGINT: ignored
    # here, a SIGINT the script sends to PID 1 cannot end the runner before it reports.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.close(RESULT_FD)
        os.close(result_r)
        child(fields, script, result_w, dumps)
        os._exit(0)
    os.close(result_w)
    reply, status = wait_child(pid, result_r)
    if reply == b"too_large":
        reply = error_frame(dumps, "result_too_large", "the result is over the size limit")
    elif reply == CORRUPTED:
        reply = error_frame(dumps, "result_not_json",
                            "the script wrote to the runner's private result channel: no result can be trusted")
    elif reply == CLOSED:
        reply = error_frame(dumps, "result_not_json",
                            "the script closed the runner's private result channel: its result could not be sent")
    elif reply is None:
        if os.WIFSIGNALED(status):
            info = {"signal": os.WTERMSIG(status)}
        else:
            info = {"exit_code": os.WEXITSTATUS(status)}
        reply = frame(b"exited", dumps(info).encode("ascii"))
    end_everything_else()
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
