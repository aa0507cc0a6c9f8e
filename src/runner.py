"""python-executor's runner: the first process inside every jail (protocol v2).

The service starts it as `python3 -I -B -c <this file> warm|cold [module ...]` inside nsjail, where it is
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
   `exited <n>\\n{"exit_code"|"signal":N,"usage":{...}}`.

stdout and stderr (fds 1 and 2) are the jail's own pipes to the service, untouched.

`collect` semantics: each pattern is matched per path component with fnmatch (`*` matches
names starting with a dot too), `**` is any number of directories (zero included; last, it
matches every file below). Only regular files come back: symlinks are never followed (a link
to /etc/passwd is not collected, nor is anything under a linked directory), FIFOs, sockets and
devices are skipped without being read. A hard link is a regular file: in a jail it can only
name a file of the jail's own /tmp (a link across mounts fails), so it is collected like any
other. Names that are not valid UTF-8 cannot be JSON keys faithfully and are skipped, as are
files the runner cannot read and directories deeper than MAX_COLLECT_DEPTH. A walk that looks
at more than MAX_COLLECT_ENTRIES entries, more than `max_files` matches, or more bytes than the
result cap is `result_too_large`.
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
# Bounds on a `collect` walk: directory entries looked at, directory depth searched, and the
# number of files taken when the request does not say.
MAX_COLLECT_ENTRIES = 20000
MAX_COLLECT_DEPTH = 32
DEFAULT_MAX_FILES = 100
# Bytes counted per collected file on top of its name and base64 (the JSON around them).
FILE_ENTRY_OVERHEAD = 64


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
        chunk = os.read(fd, min(size, 1 << 20))
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


# ---- Data in: the working directory and its files ----


def check_path(path, what="file"):
    """The components of a relative `/`-separated path, or Refused naming it."""
    if not isinstance(path, str) or not path:
        raise Refused("invalid_request", "a %s path must be a non-empty string" % what)
    parts = path.split("/")
    for part in parts:
        if part in ("", ".", "..") or "\0" in part:
            raise Refused(
                "invalid_request",
                "%s path %s must be relative, with no empty, '.' or '..' component and no NUL"
                % (what, shown(path)),
            )
    return parts


def shown(text):
    """A name as it appears in an error message: quoted, and short."""
    text = repr(text)
    return text if len(text) <= 200 else text[:200] + "..."


def make_workdir(parent=None):
    """A fresh private (0700) directory for one execution: `(path, fd)`."""
    parent = parent or WORK_PARENT
    path = os.path.join(parent, "run-" + os.urandom(8).hex())
    os.mkdir(path, 0o700)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    return path, fd


def open_dir(name, dir_fd):
    return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)


def write_files(root_fd, files):
    """Writes the request's files under `root_fd`: each path re-checked, subdirectories made,
    never through a symlink, never over an existing file."""
    import binascii

    if not isinstance(files, list):
        raise Refused("invalid_request", "files must be a list")
    for entry in files:
        if not isinstance(entry, dict):
            raise Refused("invalid_request", "each file must be an object")
        path = entry.get("path")
        parts = check_path(path)
        try:
            if "text" in entry and isinstance(entry["text"], str):
                data = entry["text"].encode("utf-8")
            elif "base64" in entry and isinstance(entry["base64"], str):
                data = binascii.a2b_base64(entry["base64"].encode("ascii"), strict_mode=True)
            else:
                raise Refused("invalid_request", "file %s has neither text nor base64" % shown(path))
        except (UnicodeError, binascii.Error, ValueError) as exc:
            raise Refused("invalid_request", "file %s: bad content (%s)" % (shown(path), exc)) from None
        fds = []
        try:
            dir_fd = root_fd
            for part in parts[:-1]:
                try:
                    os.mkdir(part, 0o700, dir_fd=dir_fd)
                except FileExistsError:
                    pass
                dir_fd = open_dir(part, dir_fd)
                fds.append(dir_fd)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(parts[-1], flags, 0o600, dir_fd=dir_fd)
            try:
                write_all(fd, data)
            finally:
                os.close(fd)
        except OSError as exc:
            raise Refused("invalid_request", "file %s cannot be written: %s" % (shown(path), exc.strerror)) from None
        finally:
            for fd in fds:
                os.close(fd)


# ---- Data out: collect ----


def compile_patterns(patterns):
    """Each pattern as its list of components; Refused for anything that could leave the
    working directory (absolute, `..`) or is malformed."""
    if not isinstance(patterns, list):
        raise Refused("invalid_request", "collect must be a list of patterns")
    return [tuple(check_path(p, "collect pattern")) for p in patterns]


def closure(states, patterns):
    """Adds, for every state sitting on a `**`, the state past it (`**` may match nothing)."""
    todo = list(states)
    seen = set(states)
    while todo:
        p, i = todo.pop()
        if i < len(patterns[p]) and patterns[p][i] == "**" and (p, i + 1) not in seen:
            seen.add((p, i + 1))
            todo.append((p, i + 1))
    return seen


def step(states, patterns, name, fnmatchcase):
    """For one directory entry: (does it match as a file, the states to descend with)."""
    is_match = False
    descend = set()
    for p, i in states:
        pattern = patterns[p]
        if i >= len(pattern):
            continue
        part = pattern[i]
        if part == "**":
            descend.add((p, i))
            if i + 1 == len(pattern):
                is_match = True
        elif fnmatchcase(name, part):
            if i + 1 == len(pattern):
                is_match = True
            else:
                descend.add((p, i + 1))
    return is_match, closure(descend, patterns) if descend else descend


class Collector:
    """Finds and reads the files `collect` asks for, under a directory fd, bounded throughout.

    Runs in the runner (PID 1) after every other process in the jail is dead, so nothing moves
    under it; it still never follows a symlink (scandir without following, every open with
    O_NOFOLLOW relative to its directory's fd) and reads regular files only (a FIFO or a device
    is skipped: opened O_NONBLOCK, checked with fstat, never read). A name that is not valid
    UTF-8 cannot be a JSON key faithfully: such files and directories are skipped."""

    def __init__(self, patterns, max_files, budget, max_entries=MAX_COLLECT_ENTRIES, max_depth=MAX_COLLECT_DEPTH):
        self.patterns = compile_patterns(patterns)
        self.max_files = max_files
        self.budget = budget
        self.max_entries = max_entries
        self.max_depth = max_depth
        self.entries = 0
        self.matches = []
        self.walk_cut = False

    def find(self, root_fd):
        from fnmatch import fnmatchcase

        if not self.patterns:
            return
        start = closure({(p, 0) for p in range(len(self.patterns))}, self.patterns)
        self._walk(root_fd, (), start, fnmatchcase)

    def _walk(self, dir_fd, prefix, states, fnmatchcase):
        subdirs = []
        try:
            listing = os.scandir(dir_fd)
        except OSError:
            return
        with listing:
            for entry in listing:
                self.entries += 1
                if self.entries > self.max_entries:
                    self.walk_cut = True
                    return
                name = entry.name
                try:
                    name.encode("utf-8")
                except UnicodeError:
                    continue
                is_match, descend = step(states, self.patterns, name, fnmatchcase)
                try:
                    if is_match and entry.is_file(follow_symlinks=False):
                        self.matches.append(prefix + (name,))
                    elif descend and entry.is_dir(follow_symlinks=False):
                        subdirs.append((name, descend))
                except OSError:
                    continue
        if len(prefix) >= self.max_depth:
            return
        for name, descend in sorted(subdirs):
            try:
                fd = open_dir(name, dir_fd)
            except OSError:
                continue
            try:
                self._walk(fd, prefix + (name,), descend, fnmatchcase)
            finally:
                os.close(fd)
            if self.walk_cut:
                return

    def read(self, root_fd, used):
        """The `files` object's JSON text; `used` bytes of the budget are taken already.
        Raises Refused(result_too_large) past max_files or the budget."""
        import binascii
        import json
        import mimetypes

        if self.walk_cut and len(self.matches) > self.max_files:
            raise Refused(
                "result_too_large",
                "more than %d files match collect (%d found before the search stopped), over the limit of %d"
                % (self.max_files, len(self.matches), self.max_files),
            )
        if self.walk_cut:
            raise Refused(
                "result_too_large",
                "collect looked at more than %d directory entries without finishing: "
                "narrow the patterns" % self.max_entries,
            )
        if len(self.matches) > self.max_files:
            raise Refused(
                "result_too_large",
                "%d files match collect, over the limit of %d" % (len(self.matches), self.max_files),
            )
        remaining = self.budget - used - 2
        parts = []
        for path in sorted(set(self.matches)):
            name = "/".join(path)
            key = json.dumps(name)
            media_type = media_type_of(path[-1], mimetypes)
            room = remaining - len(key) - len(media_type) - FILE_ENTRY_OVERHEAD
            cap = max(room, 0) // 4 * 3
            data = read_regular(root_fd, path, cap + 1)
            if data is None:
                continue
            if len(data) > cap:
                raise Refused("result_too_large", too_large_message(self.budget, name))
            entry = '%s:{"base64":"%s","size":%d,"media_type":%s}' % (
                key,
                binascii.b2a_base64(data, newline=False).decode("ascii"),
                len(data),
                json.dumps(media_type),
            )
            remaining -= len(entry) + 1
            if remaining < 0:
                raise Refused("result_too_large", too_large_message(self.budget, name))
            parts.append(entry)
        return "{" + ",".join(parts) + "}"


def media_type_of(name, mimetypes):
    """From the name's extension, by Python's built-in table only (the same in every jail and
    on every host); "./" keeps a name like `data:text` from being read as a data: URL."""
    global MIME_TYPES
    if MIME_TYPES is None:
        MIME_TYPES = mimetypes.MimeTypes()
    return MIME_TYPES.guess_type("./" + name, strict=False)[0] or "application/octet-stream"


MIME_TYPES = None


def too_large_message(limit, name=None):
    what = "the result with the collected files" if name is not None else "the result"
    return "%s is over the %d-byte limit" % (what, limit)


def read_regular(root_fd, path, cap):
    """Up to `cap` bytes of the regular file at `path` (components) under `root_fd`; None if
    it is not a regular file reached without symlinks."""
    import stat

    fds = []
    try:
        dir_fd = root_fd
        for part in path[:-1]:
            dir_fd = open_dir(part, dir_fd)
            fds.append(dir_fd)
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
        fd = os.open(path[-1], flags, dir_fd=dir_fd)
    except OSError:
        return None
    finally:
        for each in fds:
            os.close(each)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks = []
        size = 0
        while size < cap:
            chunk = os.read(fd, min(cap - size, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


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
        message = "<exception message unavailable>"
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
    """How main takes `input`: "required" (a positional parameter without a default),
    "optional" (one with a default, or *args), "none", or "unknown" (no signature)."""
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
            return "optional"
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            return "required" if parameter.default is parameter.empty else "optional"
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
        # Defaults belong to the last positional parameters: the first has one only if all do.
        defaults = entry.__defaults__ or ()
        return "optional" if len(defaults) >= code.co_argcount else "required"
    return "optional" if code.co_flags & 0x04 else "none"  # CO_VARARGS


def may_be_awaitable(value):
    """False for what inspect.isawaitable surely rejects (so inspect is imported only for the
    rest): coroutines, generators (a generator-based coroutine) and Awaitables, by the same
    ABC inspect asks (`_collections_abc` is loaded with the interpreter, `collections` is not)."""
    import types
    from _collections_abc import Awaitable

    return isinstance(value, (types.CoroutineType, types.GeneratorType, Awaitable))


async def await_it(awaitable):
    return await awaitable


def call_main(entry, request):
    """Calls main as the contract says. A main with a positional parameter gets `input`
    (None without one); one whose parameter has a default, or that takes *args, is called
    without an argument when the request has no input, exactly as before `input` existed."""
    has_input = "input" in request
    kind = call_signature(entry)
    if has_input and kind == "none":
        raise Refused(
            "invalid_request",
            "main() takes no argument, but the request has input: declare a parameter, e.g. def main(data)",
        )
    if has_input:
        value = entry(request["input"])
    elif kind == "required":
        value = entry(None)
    else:
        value = entry()
    if not may_be_awaitable(value):
        return value
    import inspect

    if inspect.isawaitable(value):
        import asyncio

        value = asyncio.run(value if inspect.iscoroutine(value) else await_it(value))
    return value


class NotJson(TypeError):
    """Why a value returned by main has no JSON form, already worded for the user."""


def to_json(value):
    """`default=` for json.dumps: numpy scalars and arrays become plain Python values (numpy is
    only looked at if the script imported it); a pandas DataFrame or Series gets a hint."""
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        generic, ndarray = getattr(numpy, "generic", None), getattr(numpy, "ndarray", None)
        if isinstance(generic, type) and isinstance(value, generic):
            plain = value.item()
            if isinstance(plain, generic):
                # np.longdouble and friends have no Python equivalent: .item() returns them.
                raise NotJson("main() returned a numpy %s, which has no JSON form" % type(value).__name__)
            return plain
        if isinstance(ndarray, type) and isinstance(value, ndarray):
            return value.tolist()
    pandas = sys.modules.get("pandas")
    if pandas is not None:
        for name in ("DataFrame", "Series"):
            cls = getattr(pandas, name, None)
            if isinstance(cls, type) and isinstance(value, cls):
                raise NotJson(
                    "main() returned a pandas %s, which is not JSON-serialisable: return its "
                    ".to_dict() (or .to_dict('records')) instead" % name
                )
    raise TypeError("Object of type %s is not JSON serializable" % type(value).__name__)


def run_script(request, script, dumps):
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
            cap_text("SyntaxError: %s" % exc.msg, MAX_SUMMARY),
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

    module = types.ModuleType("__script__")
    module.__file__ = SCRIPT_NAME
    sys.modules["__script__"] = module
    try:
        exec(code, module.__dict__)
        entry = module.__dict__.get("main")
        if not callable(entry):
            return error_frame(dumps, "missing_main", "main is not defined or not callable")
        value = call_main(entry, request)
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
        text = dumps(value, allow_nan=False, default=to_json)
        if not isinstance(text, str):
            raise TypeError("json.dumps did not return a string")
    except MemoryError:
        return error_frame(dumps, "memory_limit", "MemoryError: out of memory serialising the result")
    except RecursionError:
        return error_frame(dumps, "result_not_json", "main() returned a value nested too deeply for JSON")
    except NotJson as exc:
        return error_frame(dumps, "result_not_json", cap_text(describe(exc)[1], MAX_SUMMARY))
    except (TypeError, ValueError) as exc:
        return error_frame(dumps, "result_not_json",
                           "main() returned a value that is not JSON-serialisable: %s"
                           % cap_text(describe(exc)[1], MAX_SUMMARY))
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


def child(request, script, result_w, dumps):
    os.setsid()
    try:
        os.dup2(result_w, HIGH_FD, inheritable=False)
        os.close(result_w)
        result_w = HIGH_FD
    except OSError:
        pass
    me = _getpid()
    try:
        reply = run_script(request, script, dumps)
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
    return frame(tag, dumps(fields, ensure_ascii=True).encode("ascii"))


def final_frame(reply, status, request, root_fd, dumps):
    """The frame for the host, without usage yet: `(tag, fields)` for an error or an exit,
    or `(b"ok", (value, files))` with the value's JSON bytes and the files' JSON text or None."""
    import json

    if reply == b"too_large":
        return b"error", {"kind": "result_too_large", "message": too_large_message(result_limit(request))}
    if reply == CORRUPTED:
        return b"error", {"kind": "result_not_json",
                          "message": "the script wrote to the runner's private result channel: no result can be trusted"}
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
            except ValueError:
                fields = None
        if not isinstance(fields, dict) or not isinstance(fields.get("kind"), str):
            return b"error", {"kind": "result_not_json",
                              "message": "the script wrote to the runner's private result channel: no result can be trusted"}
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
    import binascii, resource, select, signal, stat, types  # noqa

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
    request, script = read_request()
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
        os.close(root_fd)
        child(request, script, result_w, dumps)
        os._exit(0)
    os.close(result_w)
    reply, status = wait_child(pid, result_r)
    # Nothing else may run while the files are read, nor write to stdout or stderr after.
    end_everything_else()
    tag, fields = final_frame(reply, status, request, root_fd, dumps)
    usage = usage_of(started, monotonic)
    if tag == b"ok":
        value, files = fields
        reply = frame(b"ok", ok_payload(value, files, usage, dumps))
    else:
        reply = with_usage(dumps, tag, fields, usage)
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
