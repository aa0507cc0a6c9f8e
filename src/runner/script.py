"""The runner's script: running it as a module, calling `main`, and turning what it returns
(or raises) into a frame. A part of the runner: see the docstring of src/runner.py."""

import errno
import gc
import io
import os
import sys


# ---- The script ----


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
        message = "<exception str() failed>"  # as CPython words it in a traceback
    return name, message


def cap_text(text, limit):
    """`text` cut to about `limit` UTF-8 bytes: its head and tail, with the cut marked."""
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return text
    half = limit // 2
    head = data[:half].decode("utf-8", "ignore")
    tail = data[-half:].decode("utf-8", "ignore")
    cut = len(data) - len(head.encode("utf-8")) - len(tail.encode("utf-8"))
    return "%s...[truncated %d bytes]...%s" % (head, cut, tail)


def user_traceback(exc):
    """The traceback as Python prints it for a script file: the runner's frames, and the
    machinery between the runner and the script's first frame (asyncio.run), removed."""
    import traceback

    try:
        tb = exc.__traceback__
        frames = []
        while tb is not None:
            if tb.tb_frame.f_globals is not RUNNER_GLOBALS:
                frames.append((tb.tb_frame, tb.tb_lineno))
            tb = tb.tb_next
        first = next((i for i, (f, _) in enumerate(frames) if f.f_code.co_filename == SCRIPT_NAME), 0)
        frames = frames[first:]
        report = traceback.TracebackException(type(exc), exc, None, compact=True)
        report.stack = traceback.StackSummary.extract(iter(frames))
        text = "".join(report.format())
    except BaseException:
        text = "Traceback unavailable\n"
    return cap_text(text, MAX_TRACEBACK)


def call_signature(entry):
    """How main takes `input`: "positional" (it declares a positional parameter), "args"
    (only *args), "none", or "unknown" (no signature)."""
    quick = plain_function_signature(entry)
    return quick if quick is not None else inspected_signature(entry)


def inspected_signature(entry):
    """call_signature as inspect.signature sees it (decorators followed through __wrapped__)."""
    import inspect

    try:
        parameters = inspect.signature(entry).parameters.values()
    except (TypeError, ValueError):
        return "unknown"
    for parameter in parameters:
        if parameter.kind == parameter.VAR_POSITIONAL:
            return "args"
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            return "positional"
    return "none"


def plain_function_signature(entry):
    """call_signature for a plain `def` (no attributes of its own), read from its code
    object as inspect.signature would: importing inspect costs a jail ~10 ms of CPU, the
    largest part of its warm-up. None for anything else."""
    import types

    # Any attribute set on it (__wrapped__, __signature__, ...) may change what inspect says.
    if type(entry) is not types.FunctionType or entry.__dict__:
        return None
    code = entry.__code__
    if code.co_argcount:
        return "positional"
    return "args" if code.co_flags & 0x04 else "none"  # CO_VARARGS


def may_be_awaitable(value):
    """False for what inspect.isawaitable surely rejects (so inspect is imported only for the
    rest): coroutines, generators (a generator-based coroutine) and Awaitables, by the same
    ABC inspect asks (`_collections_abc` is loaded with the interpreter, `collections` is not)."""
    import types
    from _collections_abc import Awaitable

    return isinstance(value, (types.CoroutineType, types.GeneratorType, Awaitable))


async def await_it(awaitable):
    return await awaitable


def call_main(entry, request, originals):
    """Calls main as the contract says: a main that declares a positional parameter gets
    `input`, None when the request has none (its default, if any, is not used: API.md). One
    that takes only *args gets `input` if there is one, else no argument, so that a wrapper
    `(*args, **kwargs)` around a `main()` without a parameter still works."""
    with PythonBuiltins(originals):
        has_input = "input" in request
        kind = call_signature(entry)
        if has_input and kind == "none":
            raise Refused(
                "invalid_request",
                'the request has "input" but main() takes no argument: declare one, as in def main(data)',
            )
    if has_input:
        value = entry(request["input"])
    elif kind == "positional":
        value = entry(None)
    else:
        value = entry()
    with PythonBuiltins(originals):
        if not may_be_awaitable(value):
            return value
        import inspect

        if not inspect.isawaitable(value):
            return value
        import asyncio

        run = asyncio.run
        awaitable = value if inspect.iscoroutine(value) else await_it(value)
    return run(awaitable)


class Output(io.FileIO):
    """The script's fd 1 or 2: a write after the script closed the fd is dropped, as a
    block-buffered stream's would be at exit, rather than failing the print that line
    buffering makes write at once."""

    def write(self, data):
        try:
            return super().write(data)
        except OSError as exc:
            if exc.errno != errno.EBADF:
                raise
            return len(data)


def std_streams():
    """Gives the script sys.stdin, stdout and stderr as Python makes them at start-up, but for
    stdout, line-buffered: what the script printed before a timeout, a kill or `os._exit` is
    in the answer. New objects: a zygote's were made for its own fds, and a stream remembers
    what its fd was (seekable, for one: `reconfigure` would then seek a pipe)."""

    def writer(fd, errors):
        return io.TextIOWrapper(io.BufferedWriter(Output(fd, "wb", closefd=False)), "utf-8", errors,
                                line_buffering=True)

    # The error handlers Python gives stdio under the jail's C.UTF-8 locale: a string holding
    # undecodable bytes (`os.fsdecode`) prints as those bytes.
    streams = (io.open(0, "r", encoding="utf-8", errors="surrogateescape", closefd=False),
               writer(1, "surrogateescape"), writer(2, "backslashreplace"))
    sys.stdin, sys.stdout, sys.stderr = streams
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = streams


def is_coding_declaration(line):
    """PEP 263's `coding[:=]` comment, matched without loading `re` (~7 ms in a cold jail)."""
    stripped = line.lstrip(" \t\f")
    at = max(stripped.find("coding:"), stripped.find("coding="))
    return stripped.startswith("#") and at >= 0 and stripped[at + 7:].lstrip(" \t")[:1].isalnum()


def importable_by_spawned_processes(script):
    """multiprocessing's `spawn` and `forkserver` start fresh interpreters that find the
    script's functions by importing their module, `__script__`, as `python script.py` has them
    import `__main__` from its file: the source is saved where they look (last on sys.path,
    which they inherit), in the jail's own /tmp. Its `if __name__ == "__main__"` block does
    not run there either."""
    lines = script.split("\n")
    for i in range(min(2, len(lines))):
        # The source is saved as UTF-8: a coding declaration (PEP 263) would have it read back
        # otherwise. The line stays, as a comment, so that line numbers do not move.
        if is_coding_declaration(lines[i]):
            lines[i] = "#"
    try:
        directory = os.path.join(WORK_PARENT, ".spawn-" + os.urandom(4).hex())
        os.mkdir(directory, 0o700)
        with open(os.path.join(directory, "__script__.py"), "w", encoding="utf-8") as f:
            f.write("\n".join(lines))
    except OSError:
        return  # /tmp full: fork, the default, still works
    sys.path.append(directory)


def as_main(module):
    """`import __main__` is the script, as for `python script.py`: `from __main__ import f`
    (timeit's setup), doctest.testmod() and unittest.main() find the script's names. The module
    stays `__script__` to itself; its spec says `__main__`, so multiprocessing's spawned
    children leave their own `__main__` alone and import the script's functions from
    `__script__` (above), running its module code once, as they do for a file."""
    from importlib.machinery import ModuleSpec

    module.__spec__ = ModuleSpec("__main__", None)
    sys.modules["__main__"] = module


def run_script(request, script, dumps, originals, script_own):
    """Runs in the child. Returns the frame to send to the parent. From the script's first
    line on, builtins are the script's; once main has returned or raised, `originals` are put
    back and the script's own kept in `script_own`."""
    import linecache
    import types

    std_streams()
    # Python shows a script's own DeprecationWarnings (the filter names `__main__`); ours is
    # `__script__`.
    import warnings
    warnings.filterwarnings("default", category=DeprecationWarning, module="__script__")
    sent = {f.get("path", "").split("/")[0].rsplit(".py", 1)[0] for f in request.get("files") or ()}
    if not sent.isdisjoint(sys.stdlib_module_names):
        # What the runner may import once the script has run, imported before a file sent as
        # `traceback.py` (or a module they use) could stand in for it.
        import inspect, traceback  # noqa: F401
    # As for `python script.py`, the script's directory (its working directory, where `files`
    # are) comes first on sys.path: a helper module sent with it is importable.
    sys.path.insert(0, os.getcwd())

    # Tracebacks show the script's lines, as they would for a file: split as a file is read
    # (universal newlines), not by str.splitlines, which also breaks at form feeds and U+2028.
    lines = io.StringIO(script, newline=None).readlines()
    linecache.cache[SCRIPT_NAME] = (len(script), None, lines, SCRIPT_NAME)
    try:
        code = compile(script, SCRIPT_NAME, "exec", dont_inherit=True)
    except SyntaxError as exc:
        return error_frame(
            dumps,
            "syntax_error",
            cap_text("%s: %s" % (type(exc).__name__, exc.msg), MAX_SUMMARY),
            line=exc.lineno or 1,
            column=exc.offset or 1,
        )
    except (ValueError, MemoryError, RecursionError) as exc:
        name, message = describe(exc)
        message = message or name
        if isinstance(exc, (MemoryError, RecursionError)):
            # CPython's parser and compiler give up on very deep nesting this way.
            message = "the script is nested too deeply to compile (%s)" % message
        return error_frame(dumps, "syntax_error", cap_text("SyntaxError: %s" % message, MAX_SUMMARY), line=1, column=1)

    if "multiprocessing" in script or "concurrent" in script:
        importable_by_spawned_processes(script)
    module = types.ModuleType("__script__")
    module.__file__ = SCRIPT_NAME
    sys.modules["__script__"] = module
    as_main(module)
    try:
        try:
            exec(code, module.__dict__)
            with PythonBuiltins(originals):
                entry = module.__dict__.get("main")
                if not callable(entry):
                    raise Refused("missing_main", "main is not defined or not callable")
            value = call_main(entry, request, originals)
        finally:
            script_own.update(set_aside(originals))
    except Refused as refused:
        return error_frame(dumps, refused.kind, refused.message, **refused.fields)
    except MemoryError as exc:
        return error_frame(dumps, "memory_limit", "MemoryError: the script ran out of memory",
                           traceback=user_traceback(exc))
    except SystemExit:
        raise
    except BaseException as exc:  # KeyboardInterrupt and friends are the script's errors too
        name, message = describe(exc)
        message = cap_text(message, MAX_EXCEPTION_MESSAGE)
        return error_frame(
            dumps,
            "runtime_error",
            cap_text("%s: %s" % (name, message) if message else name, MAX_SUMMARY),
            exception={"type": cap_text(name, MAX_SUMMARY), "message": message},
            traceback=user_traceback(exc),
        )

    try:
        text = result_json(dumps, value)
        if not isinstance(text, str):
            raise TypeError("json.dumps did not return a string")
    except MemoryError:
        return error_frame(dumps, "memory_limit", "MemoryError: out of memory serialising the result")
    except RecursionError:
        return error_frame(dumps, "result_not_json", "main() returned a value nested too deeply for JSON")
    except NotJson as exc:
        return error_frame(dumps, "result_not_json", cap_text(describe(exc)[1], MAX_SUMMARY))
    except (TypeError, ValueError) as exc:
        why = cap_text(describe(exc)[1], MAX_SUMMARY)
        if isinstance(exc, ValueError) and why.startswith("Out of range float values"):
            # Python 3.11 does not say which value; the contract wants the type named.
            why = "a float NaN or infinity (JSON has no such number)"
        return error_frame(dumps, "result_not_json",
                           "main() returned a value that is not JSON-serialisable: %s" % why)
    except BaseException as exc:
        name, message = describe(exc)
        return error_frame(dumps, "result_not_json",
                           cap_text("main() returned a value that could not be serialised: %s: %s"
                                    % (name, message), MAX_SUMMARY))
    payload = text.encode("utf-8", "surrogatepass")
    limit = result_limit(request)
    if len(payload) > limit:
        return error_frame(dumps, "result_too_large",
                           "the result is %d bytes of JSON, over the %d-byte limit" % (len(payload), limit),
                           limit_bytes=limit)
    return frame(b"ok", payload)


def result_limit(request):
    limit = request.get("result_limit_bytes")
    return limit if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0 else MAX_FRAME


def error_frame(dumps, kind, message, **fields):
    fields["kind"] = kind
    fields["message"] = message
    return frame(b"error", dumps(fields, ensure_ascii=True).encode("ascii"))


def child(request, script, result_w, dumps, returned):
    os.setsid()
    try:
        os.dup2(result_w, HIGH_FD, inheritable=False)
        os.close(result_w)
        result_w = HIGH_FD
    except OSError:
        pass
    me = _getpid()
    # What the runner and the warm modules made lives as long as the process: the script's
    # garbage collections need not walk it (nor write to its pages, copies of the parent's).
    gc.freeze()
    originals, script_own = dict(_BUILTINS), {}
    try:
        reply = run_script(request, script, dumps, originals, script_own)
    except SystemExit:
        if _getpid() == me:
            bring_back(script_own)
            end_as_python_does()
        flush_std()
        raise
    if _getpid() != me:
        # A process the script forked returned through the runner: it has nothing to report.
        _exit(0)
    if reply[:3] == b"ok ":
        try:
            returned[0] = 1
        except BaseException:  # closed by the script: only its own message is the poorer
            pass
    # The program's end (threads, atexit, finalizers) sees the script's builtins, as in Python;
    # the report is written on Python's.
    bring_back(script_own)
    end_as_python_does()
    flush_std()
    set_aside(originals)
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
    # What C code wrote with stdio (printf through ctypes) waits in libc's buffer, which the
    # child's os._exit would drop. Flushing it takes ctypes: loaded by such a script (and by
    # a zygote), not imported here for the others.
    ctypes = sys.modules.get("ctypes")
    if ctypes is not None:
        try:
            ctypes.CDLL(None).fflush(None)
        except BaseException:
            pass
